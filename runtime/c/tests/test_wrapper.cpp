// test_wrapper MODEL.onnx: the C++ wrapper (nin_edge.hpp) in C++17 and, built as C++20, its std::span
// overloads: RAII, moves, exceptions with the C status code, threads. pytest runs both builds.
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "nin_edge.hpp"

static int failures = 0;
#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            failures++;                                                                                                \
            std::printf("FAIL line %d: %s\n", __LINE__, #cond);                                                        \
        }                                                                                                              \
    } while (0)

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s MODEL.onnx\n", argv[0]);
        return 2;
    }
    try {
        nin::Model missing("no/such/model.onnx");
        CHECK(false);
    } catch (const nin::Error &e) {
        CHECK(e.code() == NIN_ERR_IO);
        CHECK(std::strstr(e.what(), "does not exist") != nullptr);
    }
    nin::Model model{std::string_view(argv[1])};
    CHECK(model.labels().size() == model.info().label_count);
    CHECK(model.sha256().size() == 64 && model.sha256() == nin_model_sha256(model.handle()));
    CHECK(model.channels() == 1 || model.channels() == 3);
    std::vector<std::uint8_t> pixels(40 * 30 * 3);
    for (std::size_t i = 0; i < pixels.size(); i++) pixels[i] = static_cast<std::uint8_t>(i * 13 % 256);
    std::vector<nin::Image> images{{pixels.data(), 40, 30, 3, 0}, {pixels.data(), 30, 40, 1, 0}};

    auto top = model.classify(images, 2);
    CHECK(top.size() == 2 && top[0].size() == 2);
    CHECK(top[0][0].probability >= top[0][1].probability);
    CHECK(top[0][0].label == model.labels()[top[0][0].index]);
    auto logits = model.logits(images);
    CHECK(logits.size() == 2 * model.info().label_count);
#if __cplusplus >= 202002L && defined(__cpp_lib_span)
    auto viaspan = model.classify(std::span<const nin::Image>(images), 2);
    CHECK(viaspan[1][0].index == top[1][0].index);
    std::printf("C++20: std::span overloads built\n");
#endif
    try {
        model.classify(images[0], 0);
        CHECK(false);
    } catch (const nin::Error &e) {
        CHECK(e.code() == NIN_ERR_ARGUMENT);
        CHECK(std::string(e.what()).find("top_k must be a whole number") != std::string::npos);
    }

    // Threads share one Model.
    std::vector<std::thread> threads;
    std::vector<std::size_t> answers(4);
    for (int t = 0; t < 4; t++)
        threads.emplace_back([&, t] { answers[t] = model.classify(images[1]).front().index; });
    for (auto &t : threads) t.join();
    for (auto a : answers) CHECK(a == top[1][0].index);

    nin::Model moved(std::move(model));
    CHECK(moved.classify(images[0]).front().index == top[0][0].index);
    try {
        model.classify(images[0]);  // NOLINT: use after move is the point
        CHECK(false);
    } catch (const nin::Error &e) {
        CHECK(e.code() == NIN_ERR_ARGUMENT);
    }
    std::printf("%s\n", failures ? "FAILED" : "all checks passed");
    return failures ? 1 : 0;
}
