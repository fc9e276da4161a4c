;; Multi-value results in both directions, and a reference-typed export the raw path must refuse.
(module
  (import "host" "divmod" (func $divmod (param i32 i32) (result i32 i32)))
  (import "host" "fail" (func $fail (param i32) (result i32)))
  (func $swap (export "swap") (param i32 i64) (result i64 i32)
    (local.get 1) (local.get 0))
  (func $via_host (export "via_host") (param i32 i32) (result i32)
    (call $divmod (local.get 0) (local.get 1))
    i32.sub)
  (func $call_fail (export "call_fail") (param i32) (result i32)
    (call $fail (local.get 0)))
  (func $nothing (export "nothing"))
  (func $takes_ref (export "takes_ref") (param externref)))
