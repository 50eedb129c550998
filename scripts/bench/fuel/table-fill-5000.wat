;; table.fill of 5,000 null entries.
(module (table 10000 funcref) (func (export "_start") (loop $l (table.fill (i32.const 0) (ref.null func) (i32.const 5000)) (br $l))))
