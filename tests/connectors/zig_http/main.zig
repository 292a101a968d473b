//! Test connector for the Zig SDK's HTTP side: a request with a method, headers (one from
//! a secret) and a JSON body, the shared status-to-failure mapping, and the JSON helpers.
const std = @import("std");
const flowforge = @import("flowforge");

const Input = struct { url: []const u8, method: []const u8 = "GET", payload: ?std.json.Value = null };

const Output = struct {
    status: u16,
    request_id: ?[]const u8,
    body: std.json.Value,
};

/// The status convention probe shared by the four SDKs' tests (test_status_convention.py),
/// chosen by the config `{"action": "status"}`.
const StatusInput = struct { url: []const u8, check: bool = false };
const StatusOutput = struct { status: u16, ok: bool };

fn status(ctx: *flowforge.Context, input: std.json.Value) !StatusOutput {
    const in = try ctx.parseInput(StatusInput, input);
    const response = try ctx.fetch(.{ .url = in.url, .timeout_ms = 2000 });
    if (in.check) try ctx.checkStatus(response);
    return .{ .status = response.status, .ok = response.ok() };
}

pub fn handle(ctx: *flowforge.Context, config: std.json.Value, input: std.json.Value) !flowforge.Json {
    const action = if (config == .object) config.object.get("action") else null;
    if (action != null and action.? == .string and std.mem.eql(u8, action.?.string, "status")) {
        return ctx.json(try status(ctx, input));
    }
    return ctx.json(try request(ctx, input));
}

fn request(ctx: *flowforge.Context, input: std.json.Value) !Output {
    const in = try ctx.parseInput(Input, input);
    const token = try ctx.secret("token");
    const auth = try std.fmt.allocPrint(ctx.allocator, "Bearer {s}", .{token});
    const body = if (in.payload) |p| try ctx.stringify(p) else "";
    const response = try ctx.fetch(.{
        .method = in.method,
        .url = in.url,
        .headers = &.{
            .{ .name = "authorization", .value = auth },
            .{ .name = "content-type", .value = "application/json" },
        },
        .body = body,
        .timeout_ms = 2000,
    });
    try ctx.checkStatus(response);
    ctx.info("{s} {s} -> {d}", .{ in.method, in.url, response.status });
    return .{
        .status = response.status,
        .request_id = response.header("X-Request-Id"),
        .body = try response.json(ctx),
    };
}
