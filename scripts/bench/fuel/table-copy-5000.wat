;; table.copy of 5,000 entries (63 ns a unit when 64 entries were one unit).
(module (table 10000 funcref) (func (export "_start") (loop $l (table.copy (i32.const 0) (i32.const 5000) (i32.const 5000)) (br $l))))
