;; A call to an empty function per iteration.
(module (func $f) (func (export "_start") (loop $l (call $f) (br $l))))
