;; A tight counted loop: the worst case for per-iteration metering.
(module
  (func (export "sum") (result i32) (local $i i32) (local $acc i32)
    (loop $l
      (local.set $acc (i32.add (local.get $acc) (i32.xor (local.get $i) (i32.const 0x5bd1e995))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 50000000))))
    (local.get $acc))
  (func (export "_start") (result i32) (i32.and (call 0) (i32.const 0))))
