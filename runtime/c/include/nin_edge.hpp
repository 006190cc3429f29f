// nin_edge.hpp - a header-only C++17 wrapper of nin_edge.h: RAII, exceptions, std::string_view.
//
//   nin::Model model("nin.onnx");                       // or a bundle folder, nin::Options{0, "int8"}
//   nin::Image image{pixels, width, height, 1};          // 8-bit, any size; stride 0: packed rows
//   for (const nin::Prediction& p : model.classify(image, 3)) std::cout << p.label << ' ' << p.probability;
//
// Batches take a pointer and a count, a std::vector<nin::Image>, or (compiled as C++20) a std::span.
// Every failure throws nin::Error, which carries the C API's status code and message. A Model may be
// used from many threads at once (classify and logits only read it); it is movable, not copyable.
#ifndef NIN_EDGE_HPP
#define NIN_EDGE_HPP

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>
#if __cplusplus >= 202002L && __has_include(<span>)
#include <span>
#endif

#include "nin_edge.h"

namespace nin {

using Image = nin_image;

class Error : public std::runtime_error {
  public:
    Error(nin_status code, const std::string &message) : std::runtime_error(message), code_(code) {}
    nin_status code() const noexcept { return code_; }

  private:
    nin_status code_;
};

struct Options {
    int threads = 0;           // onnxruntime intra-op threads; 0: its default
    std::string precision;     // a bundle's model ("fp32", "int8", ...); empty: the default
};

struct Prediction {
    std::size_t index;
    std::string_view label;    // valid while the Model lives
    double probability;
};

class Model {
  public:
    explicit Model(std::string_view path, const Options &options = {}) {
        const std::string p(path);
        nin_options o{options.threads, options.precision.empty() ? nullptr : options.precision.c_str()};
        nin_error err{};
        if (nin_open(p.c_str(), &o, &model_, &err) != NIN_OK) throw Error(err.code, err.message);
    }
    ~Model() { nin_close(model_); }
    Model(Model &&other) noexcept : model_(std::exchange(other.model_, nullptr)) {}
    Model &operator=(Model &&other) noexcept {
        if (this != &other) {
            nin_close(model_);
            model_ = std::exchange(other.model_, nullptr);
        }
        return *this;
    }
    Model(const Model &) = delete;
    Model &operator=(const Model &) = delete;

    const nin_info &info() const { return *nin_model_info(checked()); }
    // The model's sha256 (64 hex characters), as Classifier.sha256; see nin_model_sha256.
    std::string_view sha256() const { return nin_model_sha256(checked()); }
    int input_size() const { return info().input_size; }
    int channels() const { return info().channels; }
    std::vector<std::string_view> labels() const {
        const nin_info &i = info();
        return std::vector<std::string_view>(i.labels, i.labels + i.label_count);
    }

    // The top_k classes of each image, best first: result[i] is image i's list.
    std::vector<std::vector<Prediction>> classify(const Image *images, std::size_t count, std::size_t top_k = 1) const {
        std::vector<nin_prediction> raw(count * top_k);
        nin_error err{};
        if (nin_classify(checked(), images, count, top_k, raw.data(), &err) != NIN_OK) throw Error(err.code, err.message);
        std::vector<std::vector<Prediction>> out(count);
        for (std::size_t i = 0; i < count; i++)
            for (std::size_t j = 0; j < top_k; j++) {
                const nin_prediction &p = raw[i * top_k + j];
                out[i].push_back(Prediction{p.index, p.label, p.probability});
            }
        return out;
    }
    std::vector<std::vector<Prediction>> classify(const std::vector<Image> &images, std::size_t top_k = 1) const {
        return classify(images.data(), images.size(), top_k);
    }
    std::vector<Prediction> classify(const Image &image, std::size_t top_k = 1) const {
        return classify(&image, 1, top_k).front();
    }

    // Raw logits, count x number of labels, row by row.
    std::vector<float> logits(const Image *images, std::size_t count) const {
        std::vector<float> out(count * info().label_count);
        nin_error err{};
        if (nin_logits(checked(), images, count, out.data(), &err) != NIN_OK) throw Error(err.code, err.message);
        return out;
    }
    std::vector<float> logits(const std::vector<Image> &images) const { return logits(images.data(), images.size()); }

#if __cplusplus >= 202002L && defined(__cpp_lib_span)
    std::vector<std::vector<Prediction>> classify(std::span<const Image> images, std::size_t top_k = 1) const {
        return classify(images.data(), images.size(), top_k);
    }
    std::vector<float> logits(std::span<const Image> images) const { return logits(images.data(), images.size()); }
#endif

    // The C handle, for calls the wrapper does not cover.
    const nin_model *handle() const noexcept { return model_; }

  private:
    const nin_model *checked() const {
        if (model_ == nullptr) throw Error(NIN_ERR_ARGUMENT, "this nin::Model was moved from");
        return model_;
    }
    nin_model *model_ = nullptr;
};

}  // namespace nin

#endif  // NIN_EDGE_HPP
