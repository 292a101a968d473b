//! crypto: SHA-256 digests and HMAC-SHA256 signatures for webhooks.
//!
//! `sha256` hashes the input; `hmac-sign` signs it with the `signing-key` secret;
//! `hmac-verify` checks a signature in constant time and answers `{valid: false}` on a
//! mismatch (a bad signature is an answer, not a failure of the connector).
const std = @import("std");
const flowforge = @import("flowforge");

const Context = flowforge.Context;
const Sha256 = std.crypto.hash.sha2.Sha256;
const HmacSha256 = std.crypto.auth.hmac.sha2.HmacSha256;
const Digest = [Sha256.digest_length]u8;

const key_secret = "signing-key";

const Operation = enum { sha256, @"hmac-sign", @"hmac-verify" };
const Encoding = enum { hex, base64, base64url };
const TextEncoding = enum { utf8, hex, base64 };

const Config = struct {
    operation: Operation,
    /// How digests and signatures are written (and read, for verify).
    encoding: Encoding = .hex,
    /// How the bytes of `input.data` are given.
    data_encoding: TextEncoding = .utf8,
    /// How the `signing-key` secret holds the key's bytes.
    key_encoding: TextEncoding = .utf8,
    /// Written before a signature and expected before one to verify, e.g. "sha256=".
    prefix: []const u8 = "",
};

const Input = struct { data: []const u8, signature: ?[]const u8 = null };

const Output = struct {
    digest: ?[]const u8 = null,
    signature: ?[]const u8 = null,
    valid: ?bool = null,

    // Only the field the operation produced.
    pub fn jsonStringify(self: Output, jws: anytype) !void {
        try jws.beginObject();
        if (self.digest) |d| {
            try jws.objectField("digest");
            try jws.write(d);
        }
        if (self.signature) |s| {
            try jws.objectField("signature");
            try jws.write(s);
        }
        if (self.valid) |v| {
            try jws.objectField("valid");
            try jws.write(v);
        }
        try jws.endObject();
    }
};

pub fn handle(ctx: *Context, config: std.json.Value, input: std.json.Value) !Output {
    const cfg = try ctx.parseConfig(Config, config);
    const in = try ctx.parseInput(Input, input);
    const data = decodeText(ctx.allocator, cfg.data_encoding, in.data) catch |e| switch (e) {
        error.OutOfMemory => return error.OutOfMemory,
        else => return ctx.fail(.invalid_input, "input.data is not valid {s}", .{@tagName(cfg.data_encoding)}),
    };

    switch (cfg.operation) {
        .sha256 => {
            var digest: Digest = undefined;
            Sha256.hash(data, &digest, .{});
            return .{ .digest = try encode(ctx.allocator, cfg.encoding, "", &digest) };
        },
        .@"hmac-sign" => {
            const mac = try sign(ctx, cfg, data);
            return .{ .signature = try encode(ctx.allocator, cfg.encoding, cfg.prefix, &mac) };
        },
        .@"hmac-verify" => {
            const given = in.signature orelse
                return ctx.fail(.invalid_input, "hmac-verify needs input.signature", .{});
            const expected = try sign(ctx, cfg, data);
            return .{ .valid = verify(cfg, given, expected) };
        },
    }
}

fn sign(ctx: *Context, cfg: Config, data: []const u8) !Digest {
    const secret = try ctx.secret(key_secret);
    const key = decodeText(ctx.allocator, cfg.key_encoding, secret) catch |e| switch (e) {
        error.OutOfMemory => return error.OutOfMemory,
        // Never echo the secret itself, only what is wrong with it.
        else => return ctx.fail(.invalid_config, "the {s} secret is not valid {s} (key_encoding)", .{ key_secret, @tagName(cfg.key_encoding) }),
    };
    var mac: Digest = undefined;
    HmacSha256.create(&mac, data, key);
    return mac;
}

/// Whether `given` is `expected` written in the configured encoding. Anything that does
/// not even decode to 32 bytes is simply not valid; the comparison of 32 bytes takes the
/// same time wherever they differ.
fn verify(cfg: Config, given: []const u8, expected: Digest) bool {
    if (!std.mem.startsWith(u8, given, cfg.prefix)) return false;
    const text = std.mem.trim(u8, given[cfg.prefix.len..], " \t\r\n");
    var decoded: Digest = undefined;
    switch (cfg.encoding) {
        .hex => {
            if (text.len != 2 * decoded.len) return false;
            _ = std.fmt.hexToBytes(&decoded, text) catch return false;
        },
        .base64, .base64url => {
            const codecs = if (cfg.encoding == .base64) std.base64.standard else std.base64.url_safe;
            const decoder = if (std.mem.endsWith(u8, text, "=")) codecs.Decoder else noPad(cfg.encoding).Decoder;
            const size = decoder.calcSizeForSlice(text) catch return false;
            if (size != decoded.len) return false;
            decoder.decode(&decoded, text) catch return false;
        },
    }
    return std.crypto.timing_safe.eql(Digest, decoded, expected);
}

fn noPad(encoding: Encoding) std.base64.Codecs {
    return if (encoding == .base64) std.base64.standard_no_pad else std.base64.url_safe_no_pad;
}

fn encode(allocator: std.mem.Allocator, encoding: Encoding, prefix: []const u8, bytes: []const u8) ![]const u8 {
    switch (encoding) {
        .hex => {
            const out = try allocator.alloc(u8, prefix.len + 2 * bytes.len);
            @memcpy(out[0..prefix.len], prefix);
            const digits = "0123456789abcdef";
            for (bytes, 0..) |b, i| {
                out[prefix.len + 2 * i] = digits[b >> 4];
                out[prefix.len + 2 * i + 1] = digits[b & 0x0f];
            }
            return out;
        },
        .base64, .base64url => {
            const encoder = if (encoding == .base64) std.base64.standard.Encoder else std.base64.url_safe.Encoder;
            const out = try allocator.alloc(u8, prefix.len + encoder.calcSize(bytes.len));
            @memcpy(out[0..prefix.len], prefix);
            _ = encoder.encode(out[prefix.len..], bytes);
            return out;
        },
    }
}

const DecodeError = error{ OutOfMemory, Invalid };

/// The bytes a text stands for: UTF-8 as it is, or hex / base64 (padded or not) decoded.
fn decodeText(allocator: std.mem.Allocator, encoding: TextEncoding, text: []const u8) DecodeError![]const u8 {
    switch (encoding) {
        .utf8 => return text,
        .hex => {
            if (text.len % 2 != 0) return error.Invalid;
            const out = try allocator.alloc(u8, text.len / 2);
            return std.fmt.hexToBytes(out, text) catch error.Invalid;
        },
        .base64 => {
            const decoder = if (std.mem.endsWith(u8, text, "=")) std.base64.standard.Decoder else std.base64.standard_no_pad.Decoder;
            const size = decoder.calcSizeForSlice(text) catch return error.Invalid;
            const out = try allocator.alloc(u8, size);
            decoder.decode(out, text) catch return error.Invalid;
            return out;
        },
    }
}
