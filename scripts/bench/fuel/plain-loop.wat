;; Plain code: a counted loop (the baseline).
(module (func (export "_start") (local $i i32)
  (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1))) (br $l))))
