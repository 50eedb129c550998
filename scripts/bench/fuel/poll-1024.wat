;; poll_oneoff with 1,024 (zeroed: clock) subscriptions per call.
(module (import "wasi_snapshot_preview1" "poll_oneoff" (func $p (param i32 i32 i32 i32) (result i32)))
  (memory 2)
  (func (export "_start") (loop $l (drop (call $p (i32.const 0) (i32.const 65536) (i32.const 1024) (i32.const 131000))) (br $l))))
