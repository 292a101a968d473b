//! FlowForge guest SDK for Zig: the canonical-ABI glue of the `flowforge:connector@0.1.0`
//! world, written once, and the small API a connector author uses.
//!
//! A connector's `main.zig` imports this module and declares one function:
//!
//!     const std = @import("std");
//!     const flowforge = @import("flowforge");
//!
//!     pub fn handle(ctx: *flowforge.Context, config: std.json.Value, input: std.json.Value) !Output
//!
//! `config` and `input` arrive parsed (text that is not JSON never reaches `handle`: it
//! becomes invalid-config / invalid-input here). Either parameter may instead be the
//! author's own type (`input: Input`), read straight from the JSON text; a document that
//! does not fit it is invalid-input (invalid-config for the config). The value `handle` returns is serialised
//! with `std.json`, so any struct, slice or `std.json.Value` works. Failures are returned
//! through `ctx.fail(kind, fmt, args)`, which records the failure and yields
//! `error.ConnectorFailed`; any other error becomes a failure too (see `failureFromError`).
//! The connector is compiled as the module `connector`, and this SDK as the root module
//! (so its exports are always analysed); the builder wires both
//! (`control/build/zig.py`).
//!
//! Every allocation of one call (the arguments the host copies in, the parsed JSON, the
//! author's own `ctx.allocator` allocations, the result) lives in one arena that is emptied
//! when the host has copied the result out (`cabi_post_...#invoke`), so authors never free.
//!
//! Memory layouts of the canonical ABI on wasm32 (all 4-byte aligned):
//!   result<string, string>          disc u8 @0, ptr @4, len @8
//!   result<http-response, string>   disc u8 @0; ok: status u16 @4, headers ptr/len @8/@12,
//!                                   body ptr/len @16/@20; err: ptr/len @4/@8
//!   result<string, failure>         disc u8 @0; ok: ptr/len @4/@8; err: kind u8 @4,
//!                                   message ptr/len @8/@12, retry-after-ms disc @16, value @20
//!   tuple<string, string>           4 x u32: name ptr/len, value ptr/len (16 bytes)
const std = @import("std");
const connector = @import("connector");

const Allocator = std.mem.Allocator;

// ---------------------------------------------------------------------------------------
// The author's API
// ---------------------------------------------------------------------------------------

/// The WIT `error-kind`, in its order (the discriminant is the index).
pub const ErrorKind = enum(u8) {
    invalid_input,
    invalid_config,
    unauthorized,
    not_found,
    rate_limited,
    unavailable,
    internal,

    /// The WIT spelling, e.g. "rate-limited".
    pub fn wireName(kind: ErrorKind) []const u8 {
        return wire_kinds[@backingInt(kind)];
    }

    /// Parse the WIT spelling ("not-found"); null for anything else.
    pub fn fromName(name: []const u8) ?ErrorKind {
        for (wire_kinds, 0..) |candidate, i| {
            if (std.mem.eql(u8, candidate, name)) return @fromBackingInt(@intCast(i));
        }
        return null;
    }
};

const wire_kinds = [_][]const u8{
    "invalid-input", "invalid-config", "unauthorized", "not-found",
    "rate-limited",  "unavailable",    "internal",
};

/// The WIT `log-level`, in its order. `err` because `error` is a keyword (as `std.log`).
pub const LogLevel = enum(u8) {
    trace,
    debug,
    info,
    warn,
    err,

    /// Parse the WIT spelling ("trace" ... "error"); null for anything else.
    pub fn fromName(name: []const u8) ?LogLevel {
        if (std.mem.eql(u8, name, "error")) return .err;
        const level = std.meta.stringToEnum(LogLevel, name) orelse return null;
        return if (level == .err) null else level;
    }
};

/// A connector's failure: what went wrong, and when a retry may succeed.
pub const Failure = struct {
    kind: ErrorKind,
    message: []const u8,
    retry_after_ms: ?u32 = null,
};

/// What the SDK's own functions return: `ConnectorFailed` means the failure is recorded
/// in the context; just return it (`try` does).
pub const Error = error{ ConnectorFailed, OutOfMemory };

pub const Header = struct { name: []const u8, value: []const u8 };

/// An outgoing HTTP request. `body` is sent as given; `ctx.stringify(value)` makes JSON.
pub const Request = struct {
    method: []const u8 = "GET",
    url: []const u8,
    headers: []const Header = &.{},
    body: []const u8 = "",
    timeout_ms: ?u32 = null,
};

/// The host's answer to a request. Its slices live in the call's arena.
pub const Response = struct {
    url: []const u8,
    status: u16,
    headers: []const Header,
    body: []const u8,

    /// True for a 2xx status only, as in every FlowForge SDK.
    pub fn ok(self: Response) bool {
        return self.status >= 200 and self.status < 300;
    }

    /// The first header of that name (case-insensitive).
    pub fn header(self: Response, name: []const u8) ?[]const u8 {
        for (self.headers) |h| {
            if (std.ascii.eqlIgnoreCase(h.name, name)) return h.value;
        }
        return null;
    }

    /// The body parsed as JSON; a body that is not JSON is an `unavailable` failure
    /// (the service answered with something else than it promised: retrying may help).
    pub fn json(self: Response, ctx: *Context) Error!std.json.Value {
        return std.json.parseFromSliceLeaky(std.json.Value, ctx.allocator, self.body, .{}) catch |e| switch (e) {
            error.OutOfMemory => error.OutOfMemory,
            else => ctx.fail(.unavailable, "{s} answered HTTP {d} with a body that is not JSON", .{ self.url, self.status }),
        };
    }

    /// The body parsed into `T` (unknown fields ignored); a mismatch is `unavailable`.
    pub fn jsonAs(self: Response, comptime T: type, ctx: *Context) Error!T {
        return std.json.parseFromSliceLeaky(T, ctx.allocator, self.body, .{ .ignore_unknown_fields = true }) catch |e| switch (e) {
            error.OutOfMemory => error.OutOfMemory,
            else => ctx.fail(.unavailable, "{s} answered with unexpected JSON ({s})", .{ self.url, @errorName(e) }),
        };
    }
};

/// JSON text that is written out as it is: return it from `handle` when the output's shape
/// varies (`return ctx.json(.{ .ok = true })`), or nest it in a larger output.
pub const Json = struct {
    text: []const u8,

    pub fn jsonStringify(self: Json, jws: anytype) !void {
        try jws.print("{s}", .{self.text});
    }
};

/// One invocation's view of the host.
pub const Context = struct {
    /// The call's arena: allocate freely, never free; it is emptied after the call.
    allocator: Allocator,
    /// Set by `fail`; what the host receives when `handle` returns `error.ConnectorFailed`.
    failure: ?Failure = null,

    /// Record a failure and return `error.ConnectorFailed`: `return ctx.fail(.not_found, ...)`.
    pub fn fail(ctx: *Context, kind: ErrorKind, comptime fmt: []const u8, args: anytype) error{ConnectorFailed} {
        return ctx.failRetry(kind, null, fmt, args);
    }

    /// `fail` with a hint for the engine: retry no sooner than `retry_after_ms`.
    pub fn failRetry(ctx: *Context, kind: ErrorKind, retry_after_ms: ?u32, comptime fmt: []const u8, args: anytype) error{ConnectorFailed} {
        const message = std.fmt.allocPrint(ctx.allocator, fmt, args) catch fmt;
        ctx.failure = .{ .kind = kind, .message = message, .retry_after_ms = retry_after_ms };
        return error.ConnectorFailed;
    }

    /// Write a line to the step's log (the host masks secret values in it).
    pub fn log(ctx: *Context, level: LogLevel, comptime fmt: []const u8, args: anytype) void {
        const message = std.fmt.allocPrint(ctx.allocator, fmt, args) catch fmt;
        abi.log(@backingInt(level), abi.address(message), message.len);
    }

    pub fn debug(ctx: *Context, comptime fmt: []const u8, args: anytype) void {
        ctx.log(.debug, fmt, args);
    }
    pub fn info(ctx: *Context, comptime fmt: []const u8, args: anytype) void {
        ctx.log(.info, fmt, args);
    }
    pub fn warn(ctx: *Context, comptime fmt: []const u8, args: anytype) void {
        ctx.log(.warn, fmt, args);
    }
    pub fn err(ctx: *Context, comptime fmt: []const u8, args: anytype) void {
        ctx.log(.err, fmt, args);
    }

    /// The value of a secret the workflow granted; an `unauthorized` failure otherwise.
    pub fn secret(ctx: *Context, name: []const u8) Error![]const u8 {
        var area: abi.ResultArea = .{};
        abi.secret(abi.address(name), name.len, &area);
        const text = area.slice(4);
        if (area.byte(0) != 0) return ctx.fail(.unauthorized, "{s}", .{text});
        return text;
    }

    /// Send a request through the host, which checks it against the step's network grant.
    /// A transport error (refused, timeout, host not granted) is an `unavailable` failure
    /// carrying the host's message. Any HTTP status is a response: see `checkStatus`.
    pub fn fetch(ctx: *Context, request: Request) Error!Response {
        const wire_headers = try ctx.allocator.alloc(abi.WireHeader, request.headers.len);
        for (request.headers, wire_headers) |h, *w| w.* = .from(h);
        var area: abi.ResultArea = .{};
        abi.fetch(
            abi.address(request.method),
            request.method.len,
            abi.address(request.url),
            request.url.len,
            abi.address(wire_headers),
            wire_headers.len,
            abi.address(request.body),
            request.body.len,
            @intFromBool(request.timeout_ms != null),
            request.timeout_ms orelse 0,
            &area,
        );
        if (area.byte(0) != 0) return ctx.fail(.unavailable, "{s}", .{area.slice(4)});
        const count = area.words[3];
        const headers = try ctx.allocator.alloc(Header, count);
        if (count > 0) {
            const received: [*]const abi.WireHeader = @ptrFromInt(area.words[2]);
            for (received[0..count], headers) |w, *h| h.* = w.toHeader();
        }
        return .{
            .url = request.url,
            .status = std.mem.bytesToValue(u16, std.mem.asBytes(&area)[4..6]),
            .headers = headers,
            .body = area.slice(16),
        };
    }

    /// The shared retryability convention: 429 -> rate-limited, 5xx -> unavailable,
    /// 401/403 -> unauthorized, 404 -> not-found, other 4xx -> invalid-input; a 429 or 503
    /// carries its Retry-After as retry-after-ms (see `retryAfterMs`). Below 400 passes.
    pub fn checkStatus(ctx: *Context, response: Response) Error!void {
        const status = response.status;
        if (status < 400) return;
        const kind: ErrorKind = switch (status) {
            429 => .rate_limited,
            401, 403 => .unauthorized,
            404 => .not_found,
            400, 402, 405...428, 430...499 => .invalid_input,
            else => .unavailable,
        };
        // RFC 9110 defines Retry-After for 503 and RFC 6585 for 429; elsewhere it is ignored.
        const retry_after = if (status == 429 or status == 503)
            retryAfterMs(response.header("retry-after"), response.header("date"))
        else
            null;
        return ctx.failRetry(kind, retry_after, "{s} answered HTTP {d}: {s}", .{ response.url, status, preview(response.body) });
    }

    /// `value` as JSON text in the arena (e.g. a request body).
    pub fn stringify(ctx: *Context, value: anytype) Error![]const u8 {
        return std.json.Stringify.valueAlloc(ctx.allocator, value, .{});
    }

    /// `value` serialised now, to return or nest as it is (outputs of varying shape).
    pub fn json(ctx: *Context, value: anytype) Error!Json {
        return .{ .text = try ctx.stringify(value) };
    }

    /// The input read into `T` (unknown fields ignored); a mismatch is `invalid-input`.
    pub fn parseInput(ctx: *Context, comptime T: type, input: std.json.Value) Error!T {
        return ctx.parseValue(T, input, .invalid_input, "input");
    }

    /// The config read into `T` (unknown fields ignored); a mismatch is `invalid-config`.
    pub fn parseConfig(ctx: *Context, comptime T: type, config: std.json.Value) Error!T {
        return ctx.parseValue(T, config, .invalid_config, "config");
    }

    fn parseValue(ctx: *Context, comptime T: type, value: std.json.Value, kind: ErrorKind, what: []const u8) Error!T {
        return std.json.parseFromValueLeaky(T, ctx.allocator, value, .{ .ignore_unknown_fields = true }) catch |e| switch (e) {
            error.OutOfMemory => error.OutOfMemory,
            else => ctx.fail(kind, "{s} does not have the expected shape ({s})", .{ what, describeParseError(e) }),
        };
    }
};

fn describeParseError(e: anyerror) []const u8 {
    return switch (e) {
        error.MissingField => "a required field is missing",
        error.UnexpectedToken => "a field has the wrong type",
        error.InvalidEnumTag => "a field has a value that is not one of its choices",
        error.InvalidNumber, error.InvalidCharacter => "a number is not valid",
        error.Overflow => "a number is out of range",
        error.LengthMismatch => "an array has the wrong length",
        error.DuplicateField => "a field is given twice",
        else => @errorName(e),
    };
}

/// Milliseconds from a Retry-After value: delta-seconds (digits only), or an HTTP-date
/// (IMF-fixdate, `Wed, 21 Oct 2015 07:28:00 GMT`) measured against `date`, the response's
/// Date header, since the guest has no clock; without a readable `date` a date gives no
/// hint. A date at or before `date` is 0; anything beyond a u32 is clamped to it.
pub fn retryAfterMs(retry_after: ?[]const u8, date: ?[]const u8) ?u32 {
    const text = std.mem.trim(u8, retry_after orelse return null, ows);
    if (text.len > 0 and allDigits(text)) {
        const seconds = std.fmt.parseInt(u64, text, 10) catch return std.math.maxInt(u32);
        return clampU32(@as(i128, seconds) * 1000);
    }
    const retry_at = httpDateSeconds(text) orelse return null;
    const sent_at = httpDateSeconds(date orelse return null) orelse return null;
    return clampU32(@as(i128, retry_at - sent_at) * 1000);
}

// Optional whitespace around a header value (RFC 9110 OWS) is spaces and tabs only.
const ows = " \t";
const day_names = [_][]const u8{ "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" };
const month_names = [_][]const u8{ "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

fn clampU32(value: i128) u32 {
    return @intCast(std.math.clamp(value, 0, std.math.maxInt(u32)));
}

fn allDigits(text: []const u8) bool {
    for (text) |c| if (!std.ascii.isDigit(c)) return false;
    return true;
}

fn number(text: []const u8, low: i64, high: i64) ?i64 {
    if (!allDigits(text)) return null;
    const value = std.fmt.parseInt(i64, text, 10) catch return null;
    return if (value >= low and value <= high) value else null;
}

fn indexOf(names: []const []const u8, name: []const u8) ?usize {
    for (names, 0..) |candidate, i| if (std.mem.eql(u8, candidate, name)) return i;
    return null;
}

fn daysInMonth(year: i64, month: i64) i64 {
    if (month == 2) {
        const leap = @mod(year, 4) == 0 and (@mod(year, 100) != 0 or @mod(year, 400) == 0);
        return if (leap) 29 else 28;
    }
    return switch (month) {
        4, 6, 9, 11 => 30,
        else => 31,
    };
}

// Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's algorithm),
// spelled the same way in all four SDKs so that they agree to the second.
fn daysFromCivil(year: i64, month: i64, day: i64) i64 {
    const y = if (month <= 2) year - 1 else year;
    const era = @divFloor(y, 400);
    const year_of_era = y - era * 400;
    const day_of_year = @divFloor(153 * (if (month > 2) month - 3 else month + 9) + 2, 5) + day - 1;
    const day_of_era = year_of_era * 365 + @divFloor(year_of_era, 4) - @divFloor(year_of_era, 100) + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

/// Seconds since the epoch for an IMF-fixdate (`Wed, 21 Oct 2015 07:28:00 GMT`, the
/// HTTP-date form servers send, RFC 9110 5.6.7); null for anything else.
pub fn httpDateSeconds(value: []const u8) ?i64 {
    const text = std.mem.trim(u8, value, ows);
    if (text.len != 29 or !std.mem.eql(u8, text[3..5], ", ") or !std.mem.eql(u8, text[25..], " GMT")) return null;
    if (text[7] != ' ' or text[11] != ' ' or text[16] != ' ' or text[19] != ':' or text[22] != ':') return null;
    _ = indexOf(&day_names, text[0..3]) orelse return null;
    const month: i64 = @intCast((indexOf(&month_names, text[8..11]) orelse return null) + 1);
    const year = number(text[12..16], 0, 9999) orelse return null;
    const hour = number(text[17..19], 0, 23) orelse return null;
    const minute = number(text[20..22], 0, 59) orelse return null;
    const second = number(text[23..25], 0, 60) orelse return null; // 60: a leap second
    const day = number(text[5..7], 1, daysInMonth(year, month)) orelse return null;
    return daysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
}

fn preview(body: []const u8) []const u8 {
    const limit = 200;
    if (body.len <= limit) return body;
    // Cut on a UTF-8 boundary so the message stays valid text.
    var end: usize = limit;
    while (end > 0 and (body[end] & 0xC0) == 0x80) end -= 1;
    return body[0..end];
}

/// The failure an error stands for when `handle` returns one without `ctx.fail`: an
/// error named like a kind (`error.NotFound`, `error.InvalidInput`, ...) is that kind,
/// `OutOfMemory` and anything else is `internal`.
pub fn failureFromError(ctx: *const Context, e: anyerror) Failure {
    if (e == error.ConnectorFailed) {
        if (ctx.failure) |failure| return failure;
    }
    if (e == error.OutOfMemory) return .{ .kind = .internal, .message = "out of memory" };
    const kind: ErrorKind = switch (e) {
        error.InvalidInput => .invalid_input,
        error.InvalidConfig => .invalid_config,
        error.Unauthorized => .unauthorized,
        error.NotFound => .not_found,
        error.RateLimited => .rate_limited,
        error.Unavailable => .unavailable,
        else => .internal,
    };
    return .{ .kind = kind, .message = @errorName(e) };
}

// ---------------------------------------------------------------------------------------
// The canonical-ABI glue
// ---------------------------------------------------------------------------------------

const abi = struct {
    extern "flowforge:connector/host@0.1.0" fn log(level: i32, ptr: usize, len: usize) void;
    extern "flowforge:connector/host@0.1.0" fn secret(ptr: usize, len: usize, ret: *ResultArea) void;
    extern "flowforge:connector/host@0.1.0" fn fetch(
        method_ptr: usize,
        method_len: usize,
        url_ptr: usize,
        url_len: usize,
        headers_ptr: usize,
        headers_len: usize,
        body_ptr: usize,
        body_len: usize,
        timeout_is_some: i32,
        timeout_ms: u32,
        ret: *ResultArea,
    ) void;

    /// Big enough and aligned for every result this world passes through memory.
    const ResultArea = extern struct {
        words: [6]u32 = @splat(0),

        fn byte(area: *const ResultArea, offset: usize) u8 {
            return std.mem.asBytes(area)[offset];
        }

        fn slice(area: *const ResultArea, offset: usize) []const u8 {
            return sliceOf(area.words[offset / 4], area.words[offset / 4 + 1]);
        }
    };

    /// A `tuple<string, string>` as it lies in linear memory.
    const WireHeader = extern struct {
        name_ptr: u32,
        name_len: u32,
        value_ptr: u32,
        value_len: u32,

        fn from(h: Header) WireHeader {
            return .{
                .name_ptr = address(h.name),
                .name_len = h.name.len,
                .value_ptr = address(h.value),
                .value_len = h.value.len,
            };
        }

        fn toHeader(w: WireHeader) Header {
            return .{ .name = sliceOf(w.name_ptr, w.name_len), .value = sliceOf(w.value_ptr, w.value_len) };
        }
    };

    /// Where a list starts, for the host. An empty Zig slice may point anywhere (even
    /// past memory), and the host checks the bounds of empty lists too, so those get 0.
    fn address(list: anytype) usize {
        return if (list.len == 0) 0 else @intFromPtr(list.ptr);
    }

    fn sliceOf(ptr: u32, len: u32) []const u8 {
        if (len == 0) return "";
        const base: [*]const u8 = @ptrFromInt(ptr);
        return base[0..len];
    }
};

// Every allocation of one call lives in this arena; the host calls cabi_post after it has
// copied the result out, and that is when the arena is emptied.
var arena = std.heap.ArenaAllocator.init(std.heap.wasm_allocator);
var result_area: abi.ResultArea = .{};

const Outcome = union(enum) { ok: []const u8, err: Failure };

fn call(ctx: *Context, config_text: []const u8, input_text: []const u8) Outcome {
    const params = @typeInfo(@TypeOf(connector.handle)).@"fn".param_types;
    const config = parseArgument(params[1].?, ctx, config_text, .invalid_config, "config") catch |e|
        return .{ .err = failureFromError(ctx, e) };
    const input = parseArgument(params[2].?, ctx, input_text, .invalid_input, "input") catch |e|
        return .{ .err = failureFromError(ctx, e) };
    const output = connector.handle(ctx, config, input) catch |e| return .{ .err = failureFromError(ctx, e) };
    const text = std.json.Stringify.valueAlloc(ctx.allocator, output, .{}) catch
        return .{ .err = .{ .kind = .internal, .message = "out of memory" } };
    return .{ .ok = text };
}

/// `handle` declares what it takes: `std.json.Value` for the parsed document, or its own
/// type, read straight from the text (unknown fields ignored). A typed parameter skips the
/// generic tree, which for large inputs (thousands of numbers) is most of the time and
/// memory a call spends.
fn parseArgument(comptime T: type, ctx: *Context, text: []const u8, kind: ErrorKind, what: []const u8) Error!T {
    const options: std.json.ParseOptions = .{ .ignore_unknown_fields = true };
    return std.json.parseFromSliceLeaky(T, ctx.allocator, text, options) catch |e| switch (e) {
        error.OutOfMemory => error.OutOfMemory,
        error.SyntaxError, error.UnexpectedEndOfInput => ctx.fail(kind, "{s} is not JSON", .{what}),
        else => ctx.fail(kind, "{s} does not have the expected shape ({s})", .{ what, describeParseError(e) }),
    };
}

fn invoke(config_ptr: [*]const u8, config_len: usize, input_ptr: [*]const u8, input_len: usize) callconv(.c) *abi.ResultArea {
    var ctx: Context = .{ .allocator = arena.allocator() };
    const outcome = call(&ctx, config_ptr[0..config_len], input_ptr[0..input_len]);
    result_area = .{};
    const bytes = std.mem.asBytes(&result_area);
    switch (outcome) {
        .ok => |text| {
            bytes[0] = 0;
            result_area.words[1] = abi.address(text);
            result_area.words[2] = text.len;
        },
        .err => |failure| {
            bytes[0] = 1;
            bytes[4] = @backingInt(failure.kind);
            result_area.words[2] = abi.address(failure.message);
            result_area.words[3] = failure.message.len;
            if (failure.retry_after_ms) |ms| {
                bytes[16] = 1;
                result_area.words[5] = ms;
            }
        },
    }
    return &result_area;
}

fn postInvoke(area: *abi.ResultArea) callconv(.c) void {
    _ = area;
    _ = arena.reset(.retain_capacity);
}

fn cabiRealloc(old_ptr: ?[*]u8, old_size: usize, alignment: usize, new_size: usize) callconv(.c) ?[*]u8 {
    const alloc = arena.allocator();
    const fresh = alloc.rawAlloc(new_size, std.mem.Alignment.fromByteUnits(alignment), @returnAddress()) orelse
        return null;
    if (old_ptr) |old| @memcpy(fresh[0..@min(old_size, new_size)], old[0..@min(old_size, new_size)]);
    return fresh;
}

comptime {
    if (!@hasDecl(connector, "handle")) @compileError(
        "main.zig must declare the connector's handler: `pub fn handle(ctx: *flowforge.Context, " ++
            "config: std.json.Value, input: std.json.Value) !Output`",
    );
    @export(&invoke, .{ .name = "flowforge:connector/handler@0.1.0#invoke" });
    @export(&postInvoke, .{ .name = "cabi_post_flowforge:connector/handler@0.1.0#invoke" });
    @export(&cabiRealloc, .{ .name = "cabi_realloc" });
}
