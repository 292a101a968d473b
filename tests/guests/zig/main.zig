//! Test connector in Zig: each `action` of the input exercises one path through the host.
//!
//! The canonical-ABI glue lives once in the SDK (`connectors/sdk/zig/flowforge.zig`,
//! imported as the `flowforge` module by the builder); this file is only the logic.
const std = @import("std");
const flowforge = @import("flowforge");

const Context = flowforge.Context;

fn getString(input: std.json.Value, key: []const u8) ?[]const u8 {
    const v = input.object.get(key) orelse return null;
    return switch (v) {
        .string => |s| s,
        else => null,
    };
}

pub fn handle(ctx: *Context, config: std.json.Value, input: std.json.Value) !flowforge.Json {
    _ = config;
    if (input != .object) return ctx.fail(.invalid_input, "input must be a JSON object", .{});
    const action = getString(input, "action") orelse return ctx.fail(.invalid_input, "no action", .{});

    if (std.mem.eql(u8, action, "echo")) return ctx.json(input);

    if (std.mem.eql(u8, action, "log")) {
        const message = getString(input, "message") orelse return ctx.fail(.invalid_input, "no message", .{});
        const level = flowforge.LogLevel.fromName(getString(input, "level") orelse "info") orelse
            return ctx.fail(.invalid_input, "unknown level", .{});
        ctx.log(level, "{s}", .{message});
        return ctx.json(.{ .logged = true });
    }

    if (std.mem.eql(u8, action, "secret")) {
        const name = getString(input, "name") orelse return ctx.fail(.invalid_input, "no name", .{});
        return ctx.json(.{ .value = try ctx.secret(name) });
    }

    if (std.mem.eql(u8, action, "fetch")) {
        const url = getString(input, "url") orelse return ctx.fail(.invalid_input, "no url", .{});
        const response = try ctx.fetch(.{ .url = url });
        return ctx.json(.{ .status = response.status, .body = response.body });
    }

    if (std.mem.eql(u8, action, "fail")) {
        const kind = flowforge.ErrorKind.fromName(getString(input, "kind") orelse "internal") orelse .internal;
        const retry: ?u32 = if (input.object.get("retry_after_ms")) |v| switch (v) {
            .integer => |ms| std.math.cast(u32, ms),
            else => null,
        } else null;
        return ctx.failRetry(kind, retry, "{s}", .{getString(input, "message") orelse ""});
    }

    return ctx.fail(.invalid_input, "unknown action", .{});
}
