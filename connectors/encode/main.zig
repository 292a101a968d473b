//! encode: base64 (standard and URL-safe), hex and URL percent-encoding, both ways.
//!
//! Encoding takes text (its UTF-8 bytes); decoding gives text back, so decoded bytes that
//! are not UTF-8 are refused as invalid input (the output is a JSON string).
const std = @import("std");
const flowforge = @import("flowforge");

const Context = flowforge.Context;

const Operation = enum { encode, decode };
const Scheme = enum { base64, base64url, hex, url };

const Config = struct {
    operation: Operation,
    scheme: Scheme,
    /// base64 and base64url only: write '=' padding when encoding (decoding takes either).
    padding: bool = true,
};

const Input = struct { data: []const u8 };
const Output = struct { data: []const u8 };

pub fn handle(ctx: *Context, config: std.json.Value, input: std.json.Value) !Output {
    const cfg = try ctx.parseConfig(Config, config);
    const in = try ctx.parseInput(Input, input);
    const alloc = ctx.allocator;
    switch (cfg.operation) {
        .encode => return .{ .data = switch (cfg.scheme) {
            .base64, .base64url => try encodeBase64(alloc, codecs(cfg.scheme, cfg.padding), in.data),
            .hex => try encodeHex(alloc, in.data),
            .url => try encodeUrl(alloc, in.data),
        } },
        .decode => {
            const decoded = switch (cfg.scheme) {
                .base64, .base64url => decodeBase64(alloc, cfg.scheme, in.data),
                .hex => decodeHex(alloc, in.data),
                .url => decodeUrl(alloc, in.data),
            } catch |e| switch (e) {
                error.OutOfMemory => return error.OutOfMemory,
                error.Invalid => return ctx.fail(.invalid_input, "input.data is not valid {s}", .{@tagName(cfg.scheme)}),
            };
            if (!std.unicode.utf8ValidateSlice(decoded))
                return ctx.fail(.invalid_input, "input.data decodes to bytes that are not UTF-8 text", .{});
            return .{ .data = decoded };
        },
    }
}

const DecodeError = error{ OutOfMemory, Invalid };

fn codecs(scheme: Scheme, padding: bool) std.base64.Codecs {
    return if (scheme == .base64)
        (if (padding) std.base64.standard else std.base64.standard_no_pad)
    else
        (if (padding) std.base64.url_safe else std.base64.url_safe_no_pad);
}

fn encodeBase64(alloc: std.mem.Allocator, codec: std.base64.Codecs, bytes: []const u8) ![]const u8 {
    const out = try alloc.alloc(u8, codec.Encoder.calcSize(bytes.len));
    return codec.Encoder.encode(out, bytes);
}

fn decodeBase64(alloc: std.mem.Allocator, scheme: Scheme, text: []const u8) DecodeError![]const u8 {
    // Padded text must be padded correctly; unpadded text is taken as it is.
    const codec = codecs(scheme, std.mem.indexOfScalar(u8, text, '=') != null);
    const size = codec.Decoder.calcSizeForSlice(text) catch return error.Invalid;
    const out = try alloc.alloc(u8, size);
    codec.Decoder.decode(out, text) catch return error.Invalid;
    return out;
}

const hex_digits = "0123456789abcdef";
const hex_upper = "0123456789ABCDEF"; // RFC 3986 recommends upper case in %XX

fn encodeHex(alloc: std.mem.Allocator, bytes: []const u8) ![]const u8 {
    const out = try alloc.alloc(u8, 2 * bytes.len);
    for (bytes, 0..) |b, i| {
        out[2 * i] = hex_digits[b >> 4];
        out[2 * i + 1] = hex_digits[b & 0x0f];
    }
    return out;
}

fn decodeHex(alloc: std.mem.Allocator, text: []const u8) DecodeError![]const u8 {
    if (text.len % 2 != 0) return error.Invalid;
    const out = try alloc.alloc(u8, text.len / 2);
    return std.fmt.hexToBytes(out, text) catch error.Invalid;
}

/// RFC 3986: every byte but the unreserved characters (A-Z a-z 0-9 - . _ ~) as %XX.
fn encodeUrl(alloc: std.mem.Allocator, bytes: []const u8) ![]const u8 {
    var size: usize = 0;
    for (bytes) |b| size += if (isUnreserved(b)) 1 else 3;
    const out = try alloc.alloc(u8, size);
    var i: usize = 0;
    for (bytes) |b| {
        if (isUnreserved(b)) {
            out[i] = b;
            i += 1;
        } else {
            out[i..][0..3].* = .{ '%', hex_upper[b >> 4], hex_upper[b & 0x0f] };
            i += 3;
        }
    }
    return out;
}

fn isUnreserved(b: u8) bool {
    return std.ascii.isAlphanumeric(b) or b == '-' or b == '.' or b == '_' or b == '~';
}

/// %XX sequences to their bytes (either case); a '%' not followed by two hex digits is
/// invalid. '+' stays '+' (it means a space only in form bodies, not in URLs).
fn decodeUrl(alloc: std.mem.Allocator, text: []const u8) DecodeError![]const u8 {
    const out = try alloc.alloc(u8, text.len);
    var i: usize = 0;
    var n: usize = 0;
    while (i < text.len) : (n += 1) {
        if (text[i] == '%') {
            if (i + 3 > text.len) return error.Invalid;
            const high = std.fmt.charToDigit(text[i + 1], 16) catch return error.Invalid;
            const low = std.fmt.charToDigit(text[i + 2], 16) catch return error.Invalid;
            out[n] = high * 16 + low;
            i += 3;
        } else {
            out[n] = text[i];
            i += 1;
        }
    }
    return out[0..n];
}
