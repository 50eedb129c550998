;; memory.grow 0: the checked grow function and the engine's libcall.
(module (memory 1) (func (export "_start") (loop $l (drop (memory.grow (i32.const 0))) (br $l))))
