// Hot-path costs of the wire protocol: what every received send and every delivered message pay.

#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "protocol/messages.hpp"
#include "protocol/ws_frame.hpp"

namespace {

using namespace parley::protocol;

const std::string send_frame =
    R"({"type":"send","ref":"r-1842","room":"general","client_msg_id":"7f3c2a9e-5b1d-4e8f-9a6b-0c2d4e6f8a1b",)"
    R"("body":"Hey team, the deploy is done \u2014 let me know if anything looks off! \ud83d\ude80"})";

void BM_DecodeSend(benchmark::State& state) {
  for (auto _ : state) {
    auto r = decode_request(send_frame);
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * send_frame.size()));
}
BENCHMARK(BM_DecodeSend);

void BM_EncodeMessage(benchmark::State& state) {
  const std::string body(static_cast<std::size_t>(state.range(0)), 'x');
  const MessageView m{"general", 123456,        "alice",
                      body,      1700000000123, "7f3c2a9e-5b1d-4e8f-9a6b-0c2d4e6f8a1b"};
  for (auto _ : state) {
    std::string out = encode_message(m);
    benchmark::DoNotOptimize(out);
  }
}
BENCHMARK(BM_EncodeMessage)->Arg(60)->Arg(1000)->Arg(4000);

// A body that needs escaping: quotes, newlines and non-ASCII text.
void BM_EncodeMessageEscaped(benchmark::State& state) {
  const std::string body =
      "She said \"ship it\"\nand we did. Caf\xC3\xA9 \xE2\x82\xAC"
      "5 \xF0\x9F\x9A\x80";
  const MessageView m{"general", 123456, "alice", body, 1700000000123, "c-1"};
  for (auto _ : state) {
    std::string out = encode_message(m);
    benchmark::DoNotOptimize(out);
  }
}
BENCHMARK(BM_EncodeMessageEscaped);

// A server frame header plus payload, as the write path builds it.
void BM_FrameHeader(benchmark::State& state) {
  const std::string payload(100, 'p');
  for (auto _ : state) {
    std::string out;
    out.reserve(payload.size() + 10);
    ws::append_frame_header(out, ws::Opcode::text, payload.size());
    out.append(payload);
    benchmark::DoNotOptimize(out);
  }
}
BENCHMARK(BM_FrameHeader);

// Parsing (unmasking and validating) one 100-byte masked client text frame.
void BM_ParseMaskedFrame(benchmark::State& state) {
  const std::string frame = ws::make_client_frame(
      ws::Opcode::text, std::string(static_cast<std::size_t>(state.range(0)), 'p'), 0x37FA213DU);
  std::vector<ws::FrameEvent> events;
  events.reserve(4);
  for (auto _ : state) {
    ws::FrameParser parser;
    events.clear();
    benchmark::DoNotOptimize(parser.feed(frame, events));
    benchmark::DoNotOptimize(events);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * frame.size()));
}
BENCHMARK(BM_ParseMaskedFrame)->Arg(100)->Arg(4000);

void BM_Utf8Validate(benchmark::State& state) {
  std::string text;
  while (text.size() < 4000) {
    text += "Plain words and some caf\xC3\xA9 \xE2\x82\xAC ";
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(ws::is_valid_utf8(text));
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_Utf8Validate);

}  // namespace

BENCHMARK_MAIN();
