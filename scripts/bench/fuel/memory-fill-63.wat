;; memory.fill of 63 bytes (below one length unit).
(module (memory 1) (func (export "_start") (loop $l (memory.fill (i32.const 0) (i32.const 7) (i32.const 63)) (br $l))))
