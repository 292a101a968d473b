;; hello: the smallest useful connector, written directly in component text.
;; It logs one line through host.log and returns {"hello": <input>}.
;;   flowforge connector run examples/hello.wat --input '"Ada"'
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
  (alias export $types "error-kind" (type $error-kind))
  (alias export $types "failure" (type $failure))
  (alias export $types "log-level" (type $log-level))
  (import "flowforge:connector/host@0.1.0" (instance $host
    (alias outer $root $log-level (type $log-level-o))
    (export "log-level" (type $log-level-e (eq $log-level-o)))
    (export "log" (func (param "level" $log-level-e) (param "message" string)))
  ))

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
  (core func $host-log (canon lower (func $host "log") (memory $mem) string-encoding=utf8))
  (core module $main
    (import "libc" "memory" (memory 1))
    (import "libc" "heap" (global $heap (mut i32)))
    (import "libc" "cabi_realloc" (func $realloc (param i32 i32 i32 i32) (result i32)))
    (import "host" "log" (func $log (param i32 i32 i32)))
    (data (i32.const 64) "hello from a sandboxed connector")
    (data (i32.const 128) "{\"hello\": ")
    ;; invoke(config, input): logs a greeting, returns ok({"hello": <input>}).
    ;; The input is JSON text (the host checks it), so the result is JSON too.
    (func (export "invoke") (param $config i32) (param $config-len i32) (param $input i32) (param $input-len i32)
      (result i32)
      (local $out i32) (local $len i32)
      (call $log (i32.const 2) (i32.const 64) (i32.const 32))   ;; 2 = info
      (local.set $len (i32.add (local.get $input-len) (i32.const 11)))
      (local.set $out (call $realloc (i32.const 0) (i32.const 0) (i32.const 1) (local.get $len)))
      (memory.copy (local.get $out) (i32.const 128) (i32.const 10))
      (memory.copy (i32.add (local.get $out) (i32.const 10)) (local.get $input) (local.get $input-len))
      (i32.store8 (i32.add (local.get $out) (i32.sub (local.get $len) (i32.const 1))) (i32.const 125))
      (i32.store8 (i32.const 8) (i32.const 0))
      (i32.store (i32.const 12) (local.get $out))
      (i32.store (i32.const 16) (local.get $len))
      (i32.const 8))
  )
  (core instance $main (instantiate $main
    (with "libc" (instance $libc))
    (with "host" (instance (export "log" (func $host-log))))))

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
