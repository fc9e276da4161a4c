;; Grows memory one page at a time until memory.grow refuses, then traps: the host must report
;; this as the memory limit, and the guest's own view of the refusal is the -1 from memory.grow.
(module
  (memory (export "memory") 1)
  (func (export "bomb") (result i32)
    (local $pages i32)
    (block $refused
      (loop $more
        (br_if $refused (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
        (local.set $pages (i32.add (local.get $pages) (i32.const 1)))
        (br $more)))
    unreachable)
  (func (export "grow_until_refused") (result i32)
    (local $pages i32)
    (block $refused
      (loop $more
        (br_if $refused (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
        (local.set $pages (i32.add (local.get $pages) (i32.const 1)))
        (br $more)))
    (local.get $pages))
  ;; One big request: refused far below the cap when it overshoots, then the guest gives up.
  (func $grow_or_trap (export "grow_or_trap") (param $pages i32) (result i32)
    (if (i32.eq (memory.grow (local.get $pages)) (i32.const -1)) (then unreachable))
    (memory.size))
  ;; Grows by $pages (within the cap), then divides by zero: a trap unrelated to memory.
  (func $grow_then_divide (export "grow_then_divide") (param $pages i32) (result i32)
    (drop (memory.grow (local.get $pages)))
    (i32.div_s (i32.const 1) (i32.const 0))))
