;; random_get of 1 MiB per call.
(module (import "wasi_snapshot_preview1" "random_get" (func $r (param i32 i32) (result i32)))
  (memory 17)
  (func (export "_start") (loop $l (drop (call $r (i32.const 0) (i32.const 1048576))) (br $l))))
