;; call_indirect through a one-entry table.
(module (type $t (func)) (table 1 funcref) (elem (i32.const 0) $f) (func $f)
  (func (export "_start") (loop $l (call_indirect (type $t) (i32.const 0)) (br $l))))
