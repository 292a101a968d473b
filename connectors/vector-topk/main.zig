//! vector-topk: the k items whose vectors are most similar (cosine) to a query vector.
//!
//! The SDK reads the input straight into flat `f64` arrays (no generic JSON tree), each
//! item is scored in one pass over its numbers, and the best k are kept in a bounded
//! min-heap allocated once, so the loop over items allocates nothing.
const std = @import("std");
const flowforge = @import("flowforge");

const Context = flowforge.Context;
const Value = std.json.Value;

const default_k = 10;

const Hit = struct {
    id: Value,
    score: f64,

    // Output form: exactly {id, score}.
    pub fn jsonStringify(self: Hit, jws: anytype) !void {
        try jws.beginObject();
        try jws.objectField("id");
        try jws.write(self.id);
        try jws.objectField("score");
        try jws.write(self.score);
        try jws.endObject();
    }
};

const Output = struct { results: []const Hit };

const Item = struct { id: Value, vector: []const f64 };
const Input = struct { query: []const f64, items: []const Item, k: i64 = default_k };

pub fn handle(ctx: *Context, config: Value, input: Input) !Output {
    _ = config;
    if (input.query.len == 0) return ctx.fail(.invalid_input, "input.query is empty", .{});
    if (input.k < 1) return ctx.fail(.invalid_input, "k must be at least 1 (got {d})", .{input.k});
    var query_norm: f64 = 0;
    for (input.query) |q| query_norm += q * q;
    query_norm = @sqrt(query_norm);

    const k: usize = @intCast(@min(input.k, @as(i64, @intCast(input.items.len))));
    var top = try TopK.init(ctx.allocator, k);
    for (input.items, 0..) |item, index| {
        top.offer(try score(ctx, item, index, input.query, query_norm));
    }
    return .{ .results = top.sorted() };
}

fn score(ctx: *Context, item: Item, index: usize, query: []const f64, query_norm: f64) !Hit {
    if (item.id != .string and item.id != .integer)
        return ctx.fail(.invalid_input, "items[{d}].id must be a string or an integer", .{index});
    if (item.vector.len != query.len) return ctx.fail(
        .invalid_input,
        "items[{d}].vector has {d} dimensions but the query has {d}",
        .{ index, item.vector.len, query.len },
    );
    var dot: f64 = 0;
    var norm: f64 = 0;
    for (item.vector, query) |x, q| {
        dot += x * q;
        norm += x * x;
    }
    // A zero vector has no direction: it is similar to nothing (score 0), not an error.
    const denominator = query_norm * @sqrt(norm);
    const cosine = if (denominator == 0) 0 else dot / denominator;
    if (!std.math.isFinite(cosine))
        return ctx.fail(.invalid_input, "items[{d}].vector has values too large to score", .{index});
    // Rounding can push |cosine| a hair past 1.
    return .{ .id = item.id, .score = std.math.clamp(cosine, -1.0, 1.0) };
}

/// Whether `a` ranks before `b`: higher score first, then the smaller id (integers before
/// strings, integers by value, strings by bytes), so the order is total and stable.
fn ranksBefore(a: Hit, b: Hit) bool {
    if (a.score != b.score) return a.score > b.score;
    return idLess(a.id, b.id);
}

fn idLess(a: Value, b: Value) bool {
    return switch (a) {
        .integer => |x| switch (b) {
            .integer => |y| x < y,
            else => true,
        },
        .string => |x| switch (b) {
            .string => |y| std.mem.order(u8, x, y) == .lt,
            else => false,
        },
        else => false,
    };
}

/// The best `capacity` hits seen so far, as a min-heap whose root is the worst of them.
const TopK = struct {
    items: []Hit,
    len: usize = 0,

    fn init(allocator: std.mem.Allocator, capacity: usize) !TopK {
        return .{ .items = try allocator.alloc(Hit, capacity) };
    }

    fn offer(self: *TopK, hit: Hit) void {
        if (self.len < self.items.len) {
            self.items[self.len] = hit;
            self.len += 1;
            self.siftUp(self.len - 1);
        } else if (self.len > 0 and ranksBefore(hit, self.items[0])) {
            self.items[0] = hit;
            self.siftDown(0);
        }
    }

    fn worse(self: *const TopK, i: usize, j: usize) bool {
        return ranksBefore(self.items[j], self.items[i]);
    }

    fn siftUp(self: *TopK, start: usize) void {
        var i = start;
        while (i > 0) {
            const parent = (i - 1) / 2;
            if (!self.worse(i, parent)) break;
            std.mem.swap(Hit, &self.items[i], &self.items[parent]);
            i = parent;
        }
    }

    fn siftDown(self: *TopK, start: usize) void {
        var i = start;
        while (true) {
            var worst = i;
            for ([_]usize{ 2 * i + 1, 2 * i + 2 }) |child| {
                if (child < self.len and self.worse(child, worst)) worst = child;
            }
            if (worst == i) return;
            std.mem.swap(Hit, &self.items[i], &self.items[worst]);
            i = worst;
        }
    }

    fn sorted(self: *TopK) []const Hit {
        const hits = self.items[0..self.len];
        std.mem.sort(Hit, hits, {}, struct {
            fn lessThan(_: void, a: Hit, b: Hit) bool {
                return ranksBefore(a, b);
            }
        }.lessThan);
        return hits;
    }
};
