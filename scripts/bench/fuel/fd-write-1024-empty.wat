;; fd_write of 1,024 empty iovecs per call.
(module (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory 1)
  (func (export "_start") (loop $l (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1024) (i32.const 60000))) (br $l))))
