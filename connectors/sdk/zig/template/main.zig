//! {{short_name}}: {{description}}
//!
//! `handle` is the whole connector: the SDK (`@import("flowforge")`) parses config and input,
//! serialises what `handle` returns as JSON, and turns `ctx.fail(...)` into the failure the
//! workflow engine sees. Allocate from `ctx.allocator` and never free: it is emptied after
//! each call.
const std = @import("std");
const flowforge = @import("flowforge");

const Config = struct { greeting: []const u8 = "Hello" };
const Input = struct { name: []const u8 };
const Output = struct { message: []const u8 };

pub fn handle(ctx: *flowforge.Context, config: std.json.Value, input: std.json.Value) !Output {
    const cfg = try ctx.parseConfig(Config, config);
    const in = try ctx.parseInput(Input, input);
    if (in.name.len == 0) return ctx.fail(.invalid_input, "name is empty", .{});
    ctx.log(.debug, "greeting {d} byte(s) of name", .{in.name.len});
    // Other things the context offers:
    //   const token = try ctx.secret("token");             // declare it in [capabilities]
    //   const res = try ctx.fetch(.{ .url = "https://api.example.com/x",
    //       .headers = &.{.{ .name = "authorization", .value = token }} });
    //   try ctx.checkStatus(res);                         // 429/5xx/4xx -> the right failure
    //   const body = try res.json(ctx);
    return .{ .message = try std.fmt.allocPrint(ctx.allocator, "{s}, {s}!", .{ cfg.greeting, in.name }) };
}
