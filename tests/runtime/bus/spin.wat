;; spin: invoke(config, input) stays busy for (length of config) milliseconds by the WASI
;; monotonic clock, then returns ok(input). The bus tests' slow step: its duration is chosen
;; by padding the config, and it takes that long on any machine.
(component $root
  ;; `flowforge:connector/types`, shaped as wit-component emits it: every
  ;; component of the connector world imports this (type-only) instance.
  (type $types-ty (instance
    (type $log-level (enum "trace" "debug" "info" "warn" "error"))
    (export "log-level" (type (eq $log-level)))
    (type $header (tuple string string))
    (type $headers (list $header))
    (type $bytes (list u8))
    (type $opt-u32 (option u32))
    (type $http-request (record (field "method" string) (field "url" string)
      (field "headers" $headers) (field "body" $bytes) (field "timeout-ms" $opt-u32)))
    (export "http-request" (type (eq $http-request)))
    (type $http-response (record (field "status" u16) (field "headers" $headers) (field "body" $bytes)))
    (export "http-response" (type (eq $http-response)))
    (type $error-kind (enum "invalid-input" "invalid-config" "unauthorized" "not-found"
      "rate-limited" "unavailable" "internal"))
    (export "error-kind" (type $error-kind-e (eq $error-kind)))
    (type $failure (record (field "kind" $error-kind-e) (field "message" string)
      (field "retry-after-ms" $opt-u32)))
    (export "failure" (type (eq $failure)))
  ))
  (import "flowforge:connector/types@0.1.0" (instance $types (type $types-ty)))
  (import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock
    (export "now" (func (result u64)))))
  (alias export $clock "now" (func $now))
  (core func $now-lowered (canon lower (func $now)))
  (alias export $types "error-kind" (type $error-kind))
  (alias export $types "failure" (type $failure))

  ;; The allocator and memory live in their own core instance so that host
  ;; functions can be lowered against them before $main (which imports those
  ;; lowered functions) is instantiated. Addresses below 1024 belong to $main
  ;; (return areas, static strings); the bump heap starts at 1024.
  (core module $libc
    (memory (export "memory") 1)
    (global $heap (export "heap") (mut i32) (i32.const 1024))
    (func (export "cabi_realloc")
      (param $old i32) (param $old-size i32) (param $align i32) (param $size i32) (result i32)
      (local $ptr i32) (local $end i32) (local $pages i32)
      (local.set $ptr (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
      (local.set $end (i32.add (local.get $ptr) (local.get $size)))
      (local.set $pages (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16)))
      (if (i32.gt_u (local.get $pages) (memory.size))
        (then
          (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
            (then unreachable))))
      (if (local.get $old)
        (then (memory.copy (local.get $ptr) (local.get $old) (local.get $old-size))))
      (global.set $heap (local.get $end))
      (local.get $ptr))
    ;; post-return: everything the call allocated is dead once its result is lifted.
    (func (export "post-return") (param i32)
      (global.set $heap (i32.const 1024)))
  )
  (core instance $libc (instantiate $libc))
  (alias core export $libc "memory" (core memory $mem))
  (alias core export $libc "cabi_realloc" (core func $realloc))
  (alias core export $libc "post-return" (core func $post-return))
  (core module $main
    (import "libc" "memory" (memory 1))
    (import "clock" "now" (func $now (result i64)))
    (import "libc" "heap" (global $heap (mut i32)))
    ;; ok(ptr, len) in the return area
    (func $return-ok (param $ptr i32) (param $len i32) (result i32)
      (i32.store8 (i32.const 8) (i32.const 0))
      (i32.store (i32.const 12) (local.get $ptr))
      (i32.store (i32.const 16) (local.get $len))
      (i32.const 8))

    (func (export "invoke") (param $config i32) (param $config-len i32) (param $input i32) (param $input-len i32)
      (result i32)
      (local $end i64)
      (local.set $end (i64.add (call $now)
        (i64.mul (i64.extend_i32_u (local.get $config-len)) (i64.const 1000000))))
      (block $done
        (loop $spin
          (br_if $done (i64.ge_u (call $now) (local.get $end)))
          (br $spin)))
      (call $return-ok (local.get $input) (local.get $input-len)))
  )
  (core instance $main (instantiate $main
    (with "libc" (instance $libc))
    (with "clock" (instance (export "now" (func $now-lowered))))))

  (func $invoke (param "config" string) (param "input" string) (result (result string (error $failure)))
    (canon lift (core func $main "invoke") (memory $mem) (realloc $realloc) string-encoding=utf8
      (post-return $post-return)))

  ;; Export `flowforge:connector/handler` the way wit-component does: through a
  ;; small component that re-exports `failure`, so the export's WIT reads
  ;; `use types.{failure}` exactly as in wit/connector.wit.
  (component $handler-shim
    (type $error-kind (enum "invalid-input" "invalid-config" "unauthorized" "not-found"
      "rate-limited" "unavailable" "internal"))
    (import "import-type-error-kind" (type $error-kind-i (eq $error-kind)))
    (type $failure (record (field "kind" $error-kind-i) (field "message" string)
      (field "retry-after-ms" (option u32))))
    (import "import-type-failure" (type $failure-i (eq $failure)))
    (import "import-func-invoke" (func $invoke
      (param "config" string) (param "input" string) (result (result string (error $failure-i)))))
    (export $failure-e "failure" (type $failure-i))
    (export "invoke" (func $invoke)
      (func (param "config" string) (param "input" string) (result (result string (error $failure-e)))))
  )
  (instance $handler (instantiate $handler-shim
    (with "import-type-error-kind" (type $error-kind))
    (with "import-type-failure" (type $failure))
    (with "import-func-invoke" (func $invoke))))
  (export "flowforge:connector/handler@0.1.0" (instance $handler))
)
