//! Test connector in Zig: each `action` of the input exercises one path through the host.
//!
//! There is no bindings generator for Zig offline, so the canonical-ABI glue for the
//! `flowforge:connector/connector@0.1.0` world is written by hand below. Memory layouts
//! (all 4-byte aligned, wasm32):
//!   result<string, string>          disc u8 @0, ptr @4, len @8
//!   result<http-response, string>   disc u8 @0; ok: status u16 @4, headers ptr/len @8/@12,
//!                                   body ptr/len @16/@20; err: ptr/len @4/@8
//!   result<string, failure>         disc u8 @0; ok: ptr/len @4/@8; err: kind u8 @4,
//!                                   message ptr/len @8/@12, retry-after-ms disc @16, value @20
const std = @import("std");

const Allocator = std.mem.Allocator;

// Every allocation of one call lives in this arena; the host calls cabi_post after it has
// copied the result out, and that is when the arena is emptied.
var arena = std.heap.ArenaAllocator.init(std.heap.wasm_allocator);

const host = struct {
    extern "flowforge:connector/host@0.1.0" fn log(level: i32, ptr: [*]const u8, len: usize) void;
    extern "flowforge:connector/host@0.1.0" fn secret(ptr: [*]const u8, len: usize, ret: *ResultArea) void;
    extern "flowforge:connector/host@0.1.0" fn fetch(
        method_ptr: [*]const u8,
        method_len: usize,
        url_ptr: [*]const u8,
        url_len: usize,
        headers_ptr: usize,
        headers_len: usize,
        body_ptr: usize,
        body_len: usize,
        timeout_is_some: i32,
        timeout_ms: u32,
        ret: *ResultArea,
    ) void;
};

/// Big enough and aligned for every result this world passes through memory.
const ResultArea = extern struct { words: [6]u32 = @splat(0) };

fn byteAt(area: *const ResultArea, offset: usize) u8 {
    return std.mem.asBytes(area)[offset];
}

fn sliceAt(area: *const ResultArea, offset: usize) []const u8 {
    const ptr: [*]const u8 = @ptrFromInt(area.words[offset / 4]);
    return ptr[0..area.words[offset / 4 + 1]];
}

const levels = [_][]const u8{ "trace", "debug", "info", "warn", "error" };
const kinds = [_][]const u8{
    "invalid-input", "invalid-config", "unauthorized", "not-found",
    "rate-limited",  "unavailable",    "internal",
};

const Failure = struct { kind: u8, message: []const u8, retry_after_ms: ?u32 = null };

const Outcome = union(enum) { ok: []const u8, err: Failure };

fn indexOf(names: []const []const u8, name: []const u8) ?u8 {
    for (names, 0..) |candidate, i| {
        if (std.mem.eql(u8, candidate, name)) return @intCast(i);
    }
    return null;
}

fn fail(kind: []const u8, message: []const u8) Outcome {
    return .{ .err = .{ .kind = indexOf(&kinds, kind) orelse 6, .message = message } };
}

fn getString(obj: std.json.ObjectMap, key: []const u8) ?[]const u8 {
    const v = obj.get(key) orelse return null;
    return switch (v) {
        .string => |s| s,
        else => null,
    };
}

fn stringify(alloc: Allocator, value: anytype) Outcome {
    const text = std.json.Stringify.valueAlloc(alloc, value, .{}) catch return fail("internal", "out of memory");
    return .{ .ok = text };
}

fn run(alloc: Allocator, input: []const u8) Outcome {
    const parsed = std.json.parseFromSliceLeaky(std.json.Value, alloc, input, .{}) catch
        return fail("invalid-input", "input is not JSON");
    const obj = switch (parsed) {
        .object => |o| o,
        else => return fail("invalid-input", "input must be a JSON object"),
    };
    const action = getString(obj, "action") orelse return fail("invalid-input", "no action");

    if (std.mem.eql(u8, action, "echo")) return stringify(alloc, parsed);

    if (std.mem.eql(u8, action, "log")) {
        const message = getString(obj, "message") orelse return fail("invalid-input", "no message");
        const level = indexOf(&levels, getString(obj, "level") orelse "info") orelse
            return fail("invalid-input", "unknown level");
        host.log(level, message.ptr, message.len);
        return stringify(alloc, .{ .logged = true });
    }

    if (std.mem.eql(u8, action, "secret")) {
        const name = getString(obj, "name") orelse return fail("invalid-input", "no name");
        var area: ResultArea = .{};
        host.secret(name.ptr, name.len, &area);
        const text = sliceAt(&area, 4);
        if (byteAt(&area, 0) != 0) return fail("unauthorized", text);
        return stringify(alloc, .{ .value = text });
    }

    if (std.mem.eql(u8, action, "fetch")) {
        const url = getString(obj, "url") orelse return fail("invalid-input", "no url");
        const method = "GET";
        var area: ResultArea = .{};
        host.fetch(method.ptr, method.len, url.ptr, url.len, 0, 0, 0, 0, 0, 0, &area);
        if (byteAt(&area, 0) != 0) return fail("unavailable", sliceAt(&area, 4));
        const status: u16 = std.mem.bytesToValue(u16, std.mem.asBytes(&area)[4..6]);
        return stringify(alloc, .{ .status = status, .body = sliceAt(&area, 16) });
    }

    if (std.mem.eql(u8, action, "fail")) {
        var failure = fail(getString(obj, "kind") orelse "internal", getString(obj, "message") orelse "");
        if (obj.get("retry_after_ms")) |retry| switch (retry) {
            .integer => |ms| failure.err.retry_after_ms = std.math.cast(u32, ms),
            else => {},
        };
        return failure;
    }

    return fail("invalid-input", "unknown action");
}

var result_area: ResultArea = .{};

fn invoke(config_ptr: [*]const u8, config_len: usize, input_ptr: [*]const u8, input_len: usize) callconv(.c) *ResultArea {
    const alloc = arena.allocator();
    const config_ok = std.json.validate(alloc, config_ptr[0..config_len]) catch false;
    const outcome = if (config_ok)
        run(alloc, input_ptr[0..input_len])
    else
        fail("invalid-config", "config is not JSON");
    result_area = .{};
    const bytes = std.mem.asBytes(&result_area);
    switch (outcome) {
        .ok => |text| {
            bytes[0] = 0;
            result_area.words[1] = @intFromPtr(text.ptr);
            result_area.words[2] = text.len;
        },
        .err => |failure| {
            bytes[0] = 1;
            bytes[4] = failure.kind;
            result_area.words[2] = @intFromPtr(failure.message.ptr);
            result_area.words[3] = failure.message.len;
            if (failure.retry_after_ms) |ms| {
                bytes[16] = 1;
                result_area.words[5] = ms;
            }
        },
    }
    return &result_area;
}

fn postInvoke(area: *ResultArea) callconv(.c) void {
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
    @export(&invoke, .{ .name = "flowforge:connector/handler@0.1.0#invoke" });
    @export(&postInvoke, .{ .name = "cabi_post_flowforge:connector/handler@0.1.0#invoke" });
    @export(&cabiRealloc, .{ .name = "cabi_realloc" });
}
