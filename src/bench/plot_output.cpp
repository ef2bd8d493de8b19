// SVG -> PNG through librsvg's cairo renderer.
#include "bench/plot_output.h"

#include <cairo.h>
#include <fmt/format.h>
#include <librsvg/rsvg.h>

#include <cmath>
#include <memory>

#include "bench/bench_report.h"

namespace anvil {

Status render_svg_to_png(const std::string& svg, const std::string& png_path, double scale) {
  if (!(scale > 0 && scale <= 16)) return Status::error(fmt::format("PNG scale must be in (0, 16], got {}", scale));
  GError* error = nullptr;
  RsvgHandle* handle =
      rsvg_handle_new_from_data(reinterpret_cast<const guint8*>(svg.data()), static_cast<gsize>(svg.size()), &error);
  if (!handle) {
    std::string message = error ? error->message : "unknown error";
    if (error) g_error_free(error);
    return Status::error("cannot parse the plot's SVG: " + message);
  }
  std::unique_ptr<RsvgHandle, decltype(&g_object_unref)> owned(handle, g_object_unref);
  gdouble width = 0, height = 0;
  if (!rsvg_handle_get_intrinsic_size_in_pixels(handle, &width, &height) || width <= 0 || height <= 0)
    return Status::error("the plot's SVG has no width and height in pixels");
  const int pixels_w = static_cast<int>(std::ceil(width * scale)), pixels_h = static_cast<int>(std::ceil(height * scale));
  std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)> surface(
      cairo_image_surface_create(CAIRO_FORMAT_ARGB32, pixels_w, pixels_h), cairo_surface_destroy);
  if (cairo_surface_status(surface.get()) != CAIRO_STATUS_SUCCESS)
    return Status::error(fmt::format("cannot allocate a {}x{} image for the plot", pixels_w, pixels_h));
  std::unique_ptr<cairo_t, decltype(&cairo_destroy)> cr(cairo_create(surface.get()), cairo_destroy);
  // An opaque white background: viewers show transparent PNGs on dark themes unreadably.
  cairo_set_source_rgb(cr.get(), 1, 1, 1);
  cairo_paint(cr.get());
  const RsvgRectangle viewport{0, 0, static_cast<double>(pixels_w), static_cast<double>(pixels_h)};
  if (!rsvg_handle_render_document(handle, cr.get(), &viewport, &error)) {
    std::string message = error ? error->message : "unknown error";
    if (error) g_error_free(error);
    return Status::error("cannot render the plot: " + message);
  }
  if (cairo_surface_write_to_png(surface.get(), png_path.c_str()) != CAIRO_STATUS_SUCCESS)
    return Status::error(fmt::format("{}: cannot write the PNG", png_path));
  return Status::ok();
}

Result<std::vector<std::string>> write_plot_files(const std::string& svg_path, const std::string& svg) {
  if (svg_path.size() < 4 || svg_path.compare(svg_path.size() - 4, 4, ".svg") != 0)
    return Status::error(fmt::format("{}: a plot path must end in .svg", svg_path));
  ANVIL_RETURN_IF_ERROR(write_text_file(svg_path, svg));
  const std::string png_path = svg_path.substr(0, svg_path.size() - 4) + ".png";
  ANVIL_RETURN_IF_ERROR(render_svg_to_png(svg, png_path));
  return std::vector<std::string>{svg_path, png_path};
}

}  // namespace anvil
