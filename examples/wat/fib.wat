;; CPU-bound recursive Fibonacci. `run` returns fib(27) as the exit code's source
;; (taken modulo 256 by shells); `fib` is exported for benchmarks.
(module
  (func $fib (export "fib") (param $n i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else (i32.add (call $fib (i32.sub (local.get $n) (i32.const 1)))
                     (call $fib (i32.sub (local.get $n) (i32.const 2)))))))
  (func (export "fib30") (result i32) (call $fib (i32.const 30)))
  (func (export "_start") (result i32) (i32.rem_u (call $fib (i32.const 27)) (i32.const 100))))
