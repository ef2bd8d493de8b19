// Prometheus metrics: labelled counters, gauges and fixed-bucket histograms, rendered in the text
// exposition format 0.0.4 that Prometheus scrapes from /metrics. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace anvil::server {

using LabelValues = std::vector<std::string>;  // in the order of the family's label names

// One metric family: a name, its help text and label names; one series per label-value tuple.
class MetricFamily {
 public:
  MetricFamily(std::string name, std::string help, std::vector<std::string> label_names);
  virtual ~MetricFamily() = default;
  const std::string& name() const { return name_; }
  virtual std::string render() const = 0;

 protected:
  std::string header(const char* type) const;                 // # HELP and # TYPE lines
  std::string labels_text(const LabelValues& values, const std::string& extra = "") const;  // {a="x",le="1"}

  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
  mutable std::mutex mutex_;
};

class CounterFamily : public MetricFamily {
 public:
  using MetricFamily::MetricFamily;
  void inc(const LabelValues& labels = {}, double amount = 1.0);  // negative amounts are ignored
  // For totals another component keeps (the engine's token counts): never moves backwards.
  void advance_to(const LabelValues& labels, double total);
  double value(const LabelValues& labels = {}) const;
  std::string render() const override;

 private:
  std::map<LabelValues, double> values_;
};

class GaugeFamily : public MetricFamily {
 public:
  using MetricFamily::MetricFamily;
  void set(const LabelValues& labels, double value);
  void set(double value) { set({}, value); }
  void add(const LabelValues& labels, double amount);
  double value(const LabelValues& labels = {}) const;
  std::string render() const override;

 private:
  std::map<LabelValues, double> values_;
};

class HistogramFamily : public MetricFamily {
 public:
  // bucket_bounds: increasing upper bounds; +Inf is implicit.
  HistogramFamily(std::string name, std::string help, std::vector<double> bucket_bounds,
                  std::vector<std::string> label_names = {});
  void observe(const LabelValues& labels, double value);
  void observe(double value) { observe({}, value); }
  uint64_t count(const LabelValues& labels = {}) const;
  double sum(const LabelValues& labels = {}) const;
  std::string render() const override;

 private:
  struct Series {
    std::vector<uint64_t> bucket_counts;  // per bound, not cumulative; the last is +Inf
    double sum = 0.0;
    uint64_t count = 0;
  };
  std::vector<double> bounds_;
  std::map<LabelValues, Series> series_;
};

// Owns the families (references stay valid) and renders them in registration order.
class MetricsRegistry {
 public:
  CounterFamily& add_counter(std::string name, std::string help, std::vector<std::string> label_names = {});
  GaugeFamily& add_gauge(std::string name, std::string help, std::vector<std::string> label_names = {});
  HistogramFamily& add_histogram(std::string name, std::string help, std::vector<double> bucket_bounds,
                                 std::vector<std::string> label_names = {});
  std::string render() const;

 private:
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<MetricFamily>> families_;
};

// The exposition format's number text: integers without a fraction, +Inf / -Inf / NaN spelled out.
std::string prometheus_number(double value);
// A label value with \, " and newline escaped.
std::string prometheus_escape_label(const std::string& value);

inline constexpr const char* kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace anvil::server
