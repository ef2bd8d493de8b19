// Prometheus text exposition format 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/).
#include "server/prometheus.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace anvil::server {
namespace {

// HELP text escapes only backslash and newline (quotes are fine there).
std::string escape_help(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

}  // namespace

std::string prometheus_number(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) return fmt::format("{}", static_cast<int64_t>(value));
  return fmt::format("{}", value);  // shortest text that reads back as the same double
}

std::string prometheus_escape_label(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

MetricFamily::MetricFamily(std::string name, std::string help, std::vector<std::string> label_names)
    : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)) {}

std::string MetricFamily::header(const char* type) const {
  return fmt::format("# HELP {} {}\n# TYPE {} {}\n", name_, escape_help(help_), name_, type);
}

std::string MetricFamily::labels_text(const LabelValues& values, const std::string& extra) const {
  std::string text;
  for (size_t i = 0; i < label_names_.size(); ++i) {
    const std::string value = i < values.size() ? values[i] : "";
    text += fmt::format("{}{}=\"{}\"", text.empty() ? "" : ",", label_names_[i], prometheus_escape_label(value));
  }
  if (!extra.empty()) text += (text.empty() ? "" : ",") + extra;
  return text.empty() ? "" : "{" + text + "}";
}

void CounterFamily::inc(const LabelValues& labels, double amount) {
  if (!(amount >= 0.0)) return;  // a counter only goes up
  std::lock_guard<std::mutex> lock(mutex_);
  values_[labels] += amount;
}

void CounterFamily::advance_to(const LabelValues& labels, double total) {
  std::lock_guard<std::mutex> lock(mutex_);
  double& value = values_[labels];
  value = std::max(value, total);
}

double CounterFamily::value(const LabelValues& labels) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = values_.find(labels);
  return it == values_.end() ? 0.0 : it->second;
}

std::string CounterFamily::render() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out = header("counter");
  // An unlabelled counter is shown at 0 before its first event, so dashboards see it exists.
  if (values_.empty() && label_names_.empty()) out += name_ + " 0\n";
  for (const auto& [labels, value] : values_)
    out += fmt::format("{}{} {}\n", name_, labels_text(labels), prometheus_number(value));
  return out;
}

void GaugeFamily::set(const LabelValues& labels, double value) {
  std::lock_guard<std::mutex> lock(mutex_);
  values_[labels] = value;
}

void GaugeFamily::add(const LabelValues& labels, double amount) {
  std::lock_guard<std::mutex> lock(mutex_);
  values_[labels] += amount;
}

double GaugeFamily::value(const LabelValues& labels) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = values_.find(labels);
  return it == values_.end() ? 0.0 : it->second;
}

std::string GaugeFamily::render() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out = header("gauge");
  if (values_.empty() && label_names_.empty()) out += name_ + " 0\n";
  for (const auto& [labels, value] : values_)
    out += fmt::format("{}{} {}\n", name_, labels_text(labels), prometheus_number(value));
  return out;
}

HistogramFamily::HistogramFamily(std::string name, std::string help, std::vector<double> bucket_bounds,
                                 std::vector<std::string> label_names)
    : MetricFamily(std::move(name), std::move(help), std::move(label_names)), bounds_(std::move(bucket_bounds)) {
  std::sort(bounds_.begin(), bounds_.end());
  bounds_.erase(std::unique(bounds_.begin(), bounds_.end()), bounds_.end());
  if (!bounds_.empty() && std::isinf(bounds_.back())) bounds_.pop_back();  // +Inf is always added
}

void HistogramFamily::observe(const LabelValues& labels, double value) {
  if (std::isnan(value)) return;
  std::lock_guard<std::mutex> lock(mutex_);
  Series& series = series_[labels];
  if (series.bucket_counts.empty()) series.bucket_counts.assign(bounds_.size() + 1, 0);
  // Buckets are "less than or equal": the first bound >= value takes it.
  const size_t bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  ++series.bucket_counts[bucket];
  series.sum += value;
  ++series.count;
}

uint64_t HistogramFamily::count(const LabelValues& labels) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = series_.find(labels);
  return it == series_.end() ? 0 : it->second.count;
}

double HistogramFamily::sum(const LabelValues& labels) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = series_.find(labels);
  return it == series_.end() ? 0.0 : it->second.sum;
}

std::string HistogramFamily::render() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out = header("histogram");
  auto render_series = [&](const LabelValues& labels, const Series* series) {
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= bounds_.size(); ++i) {
      if (series) cumulative += series->bucket_counts[i];
      const std::string le = i < bounds_.size() ? prometheus_number(bounds_[i]) : "+Inf";
      out += fmt::format("{}_bucket{} {}\n", name_, labels_text(labels, "le=\"" + le + "\""), cumulative);
    }
    out += fmt::format("{}_sum{} {}\n", name_, labels_text(labels), prometheus_number(series ? series->sum : 0.0));
    out += fmt::format("{}_count{} {}\n", name_, labels_text(labels), series ? series->count : 0);
  };
  if (series_.empty() && label_names_.empty()) render_series({}, nullptr);
  for (const auto& [labels, series] : series_) render_series(labels, &series);
  return out;
}

CounterFamily& MetricsRegistry::add_counter(std::string name, std::string help, std::vector<std::string> label_names) {
  auto family = std::make_unique<CounterFamily>(std::move(name), std::move(help), std::move(label_names));
  CounterFamily& ref = *family;
  std::lock_guard<std::mutex> lock(mutex_);
  families_.push_back(std::move(family));
  return ref;
}

GaugeFamily& MetricsRegistry::add_gauge(std::string name, std::string help, std::vector<std::string> label_names) {
  auto family = std::make_unique<GaugeFamily>(std::move(name), std::move(help), std::move(label_names));
  GaugeFamily& ref = *family;
  std::lock_guard<std::mutex> lock(mutex_);
  families_.push_back(std::move(family));
  return ref;
}

HistogramFamily& MetricsRegistry::add_histogram(std::string name, std::string help, std::vector<double> bucket_bounds,
                                                std::vector<std::string> label_names) {
  auto family = std::make_unique<HistogramFamily>(std::move(name), std::move(help), std::move(bucket_bounds),
                                                  std::move(label_names));
  HistogramFamily& ref = *family;
  std::lock_guard<std::mutex> lock(mutex_);
  families_.push_back(std::move(family));
  return ref;
}

std::string MetricsRegistry::render() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out;
  for (const auto& family : families_) out += family->render();
  return out;
}

}  // namespace anvil::server
