// PolarPlan: rt::polar's choice of route (eigen route on the smaller Gram for small sides,
// Newton-Schulz or Polar Express otherwise) over batched groups.
#include "common.cuh"

#include <algorithm>

namespace symoc::cuda {
namespace {
__global__ void scale_const_kernel(float *X, int64_t rows, int64_t cols, int64_t ld, int64_t stride, float f) {
  const int64_t b = blockIdx.y, total = rows * cols;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / cols, j = e - i * cols;
    X[b * stride + i * ld + j] *= f;
  }
}
} // namespace

using namespace detail;

struct PolarPlan::Impl {
  enum Route { NS, PE, Eig, Empty };
  std::vector<Route> route;
  std::vector<size_t> index; // position in the route's plan (NS / PE group index, or eig plan)
  std::unique_ptr<NewtonSchulzPlan> ns, pe;
  std::vector<std::unique_ptr<GramPowPlan>> eig;
  std::vector<double> eig_rcond;
  size_t bytes = 0;
  std::vector<PolarGroup> ns_args, pe_args; // reused per run (sized at setup)

  Impl(Engine &e, const std::vector<Shape> &shapes, const PolarOptions &o) {
    std::vector<Shape> ns_shapes, pe_shapes;
    for (const Shape &sh : shapes) {
      PolarMethod m = o.method;
      if (m == PolarMethod::Auto)
        m = std::min(sh.rows, sh.cols) <= o.auto_eig_max ? PolarMethod::Eig : PolarMethod::NewtonSchulz;
      if (sh.rows == 0 || sh.cols == 0) {
        route.push_back(Empty);
        index.push_back(0);
      } else if (m == PolarMethod::NewtonSchulz) {
        route.push_back(NS);
        index.push_back(ns_shapes.size());
        ns_shapes.push_back(sh);
      } else if (m == PolarMethod::PolarExpress) {
        route.push_back(PE);
        index.push_back(pe_shapes.size());
        pe_shapes.push_back(sh);
      } else {
        route.push_back(Eig);
        index.push_back(eig.size());
        // polar(X) = X (X^T X)^{-1/2} when rows >= cols, else (X X^T)^{-1/2} X.
        eig.push_back(std::make_unique<GramPowPlan>(e, sh, sh.rows >= sh.cols, o.fn.precision));
        eig_rcond.push_back(o.fn.precision == EigPrecision::Float64 ? o.polar_rcond : o.fn.rcond);
        bytes = std::max(bytes, eig.back()->workspace_bytes());
      }
    }
    if (!ns_shapes.empty()) {
      ns = std::make_unique<NewtonSchulzPlan>(e, ns_shapes, PolarIteration::NewtonSchulz, o.ns_steps);
      bytes = std::max(bytes, ns->workspace_bytes());
      ns_args.resize(ns_shapes.size());
    }
    if (!pe_shapes.empty()) {
      pe = std::make_unique<NewtonSchulzPlan>(e, pe_shapes, PolarIteration::PolarExpress, o.pe_steps);
      bytes = std::max(bytes, pe->workspace_bytes());
      pe_args.resize(pe_shapes.size());
    }
  }
};

PolarPlan::PolarPlan(Engine &e, std::vector<Shape> groups, const PolarOptions &o)
    : impl_(std::make_unique<Impl>(e, groups, o)) {}
PolarPlan::~PolarPlan() = default;
size_t PolarPlan::workspace_bytes() const { return impl_->bytes; }

void PolarPlan::run(const PolarGroup *gs, size_t n, Workspace ws, cudaStream_t s) {
  Impl &im = *impl_;
  if (n != im.route.size())
    fail("polar", "run with " + std::to_string(n) + " groups, the plan has " + std::to_string(im.route.size()));
  for (size_t i = 0; i < n; ++i) {
    if (im.route[i] == Impl::NS) im.ns_args[im.index[i]] = gs[i];
    if (im.route[i] == Impl::PE) im.pe_args[im.index[i]] = gs[i];
    if (im.route[i] == Impl::Eig && (gs[i].in_sumsq || gs[i].targets || gs[i].sources || gs[i].index))
      fail("polar", "group " + std::to_string(i) +
                        " takes the eigen route, which has no in_sumsq / targets / sources / index");
  }
  if (im.ns) im.ns->run(im.ns_args.data(), im.ns_args.size(), ws, s);
  if (im.pe) im.pe->run(im.pe_args.data(), im.pe_args.size(), ws, s);
  for (size_t i = 0; i < n; ++i) {
    if (im.route[i] != Impl::Eig) continue;
    const PolarGroup &g = gs[i];
    im.eig[im.index[i]]->run(g.in, -0.5, 0.0, im.eig_rcond[im.index[i]], g.out, ws, s);
    if (g.out_scale != 1.f) {
      const int64_t total = g.out.rows * g.out.cols;
      scale_const_kernel<<<dim3(unsigned(std::min<int64_t>((total + 255) / 256, 1024)), unsigned(g.out.batch)), 256, 0,
                           s>>>(g.out.data, g.out.rows, g.out.cols, g.out.ld, g.out.batch > 1 ? g.out.stride : 0,
                                g.out_scale);
      check_launch("polar scale");
    }
  }
}

} // namespace symoc::cuda
