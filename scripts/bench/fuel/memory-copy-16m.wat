;; memory.copy of 16 MiB, unaligned.
(module (memory 512) (func (export "_start") (loop $l (memory.copy (i32.const 1) (i32.const 0) (i32.const 16777216)) (br $l))))
