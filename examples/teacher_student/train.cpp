// Teacher-student regression with a symoc-generated optimizer (the Symo notebooks' setup).
//
// Student and teacher: y = W2 tanh(W1 x), no biases, dims 100 -> 70 -> 40. Inputs are
// Gaussian with covariance eigenvalues logspace(0, -5, 100) in a random rotation (an
// ill-conditioned problem, where preconditioning matters); the teacher is a random network of
// the same shape; 5000 train and 5000 test samples; MSE over all outputs; full-batch steps.
//
// The optimizer is any library built from `symoc compile student.onnx` (loaded with dlopen
// through the C ABI of optimizer_api.h), so one binary runs every policy:
//
//   teacher_student --optimizer out/symo/build/libstudent_optimizer.so --lr 0.01 [--steps 200]
//                   [--seed 0] [--csv FILE]
//
// Prints one line per step: "step train_loss test_loss" (step 0 = before training).
#include "symoc/runtime/optimizer_api.h"

#include <cblas.h>
#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr int D_IN = 100, D_H = 70, D_OUT = 40, N_TRAIN = 5000, N_TEST = 5000;

[[noreturn]] void die(const std::string &msg) {
  std::fprintf(stderr, "teacher_student: %s\n", msg.c_str());
  std::exit(1);
}

// Random orthogonal matrix (n x n, row-major): modified Gram-Schmidt on a Gaussian matrix,
// in double. Rows of a Haar-distributed Q up to signs, which is all the setup needs.
std::vector<double> random_rotation(int n, std::mt19937_64 &rng) {
  std::normal_distribution<double> N01;
  std::vector<double> q(size_t(n) * n);
  for (auto &v : q) v = N01(rng);
  for (int i = 0; i < n; ++i) {
    double *qi = &q[size_t(i) * n];
    for (int j = 0; j < i; ++j) {
      const double *qj = &q[size_t(j) * n];
      double d = 0;
      for (int k = 0; k < n; ++k) d += qi[k] * qj[k];
      for (int k = 0; k < n; ++k) qi[k] -= d * qj[k];
    }
    double nrm = 0;
    for (int k = 0; k < n; ++k) nrm += qi[k] * qi[k];
    nrm = std::sqrt(nrm);
    for (int k = 0; k < n; ++k) qi[k] /= nrm;
  }
  return q;
}

// x = R^T diag(sqrt(lambda)) z with z ~ N(0, I): covariance R^T diag(lambda) R.
std::vector<float> make_inputs(int n, const std::vector<double> &rot, std::mt19937_64 &rng) {
  std::normal_distribution<double> N01;
  std::vector<double> sd(D_IN);
  for (int i = 0; i < D_IN; ++i) sd[i] = std::sqrt(std::pow(10.0, -5.0 * i / (D_IN - 1)));
  std::vector<float> x(size_t(n) * D_IN);
  std::vector<double> z(D_IN);
  for (int s = 0; s < n; ++s) {
    for (int i = 0; i < D_IN; ++i) z[i] = sd[i] * N01(rng);
    for (int k = 0; k < D_IN; ++k) {
      double v = 0;
      for (int i = 0; i < D_IN; ++i) v += rot[size_t(i) * D_IN + k] * z[i];
      x[size_t(s) * D_IN + k] = float(v);
    }
  }
  return x;
}

// W (rows x cols) with entries N(0, 1/cols): unit-variance pre-activations for unit inputs.
std::vector<float> init_weight(int rows, int cols, std::mt19937_64 &rng) {
  std::normal_distribution<double> N01;
  std::vector<float> w(size_t(rows) * cols);
  for (auto &v : w) v = float(N01(rng) / std::sqrt(double(cols)));
  return w;
}

struct Net {
  const float *w1, *w2; // D_H x D_IN, D_OUT x D_H
};

// A = tanh(X W1^T) (n x D_H), Y = A W2^T (n x D_OUT).
void forward(const Net &net, const float *x, int n, std::vector<float> &a, std::vector<float> &y) {
  a.resize(size_t(n) * D_H);
  y.resize(size_t(n) * D_OUT);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, D_H, D_IN, 1.f, x, D_IN, net.w1, D_IN,
              0.f, a.data(), D_H);
  for (auto &v : a) v = std::tanh(v);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, D_OUT, D_H, 1.f, a.data(), D_H, net.w2,
              D_H, 0.f, y.data(), D_OUT);
}

double mse(const std::vector<float> &y, const std::vector<float> &t) {
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += double(y[i] - t[i]) * (y[i] - t[i]);
  return s / double(y.size());
}

// Loss and gradients of mean((Y - T)^2) over all n * D_OUT entries.
double loss_and_grad(const Net &net, const float *x, const std::vector<float> &t, int n,
                     std::vector<float> &g1, std::vector<float> &g2) {
  std::vector<float> a, y;
  forward(net, x, n, a, y);
  double loss = mse(y, t);
  const float scale = 2.f / float(size_t(n) * D_OUT);
  std::vector<float> dy(y.size());
  for (size_t i = 0; i < y.size(); ++i) dy[i] = scale * (y[i] - t[i]);
  g2.assign(size_t(D_OUT) * D_H, 0.f);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D_OUT, D_H, n, 1.f, dy.data(), D_OUT,
              a.data(), D_H, 0.f, g2.data(), D_H); // dY^T A
  std::vector<float> dh(a.size());
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, D_H, D_OUT, 1.f, dy.data(), D_OUT,
              net.w2, D_H, 0.f, dh.data(), D_H); // dA = dY W2
  for (size_t i = 0; i < dh.size(); ++i) dh[i] *= 1.f - a[i] * a[i];
  g1.assign(size_t(D_H) * D_IN, 0.f);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D_H, D_IN, n, 1.f, dh.data(), D_H, x,
              D_IN, 0.f, g1.data(), D_IN); // dH^T X
  return loss;
}

const char *arg_value(int &i, int argc, char **argv) {
  if (i + 1 >= argc) die(std::string("missing value after ") + argv[i]);
  return argv[++i];
}

} // namespace

int main(int argc, char **argv) {
  std::string lib_path, csv_path;
  double lr = 0;
  int steps = 200;
  unsigned seed = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--optimizer") lib_path = arg_value(i, argc, argv);
    else if (a == "--lr") lr = std::atof(arg_value(i, argc, argv));
    else if (a == "--steps") steps = std::atoi(arg_value(i, argc, argv));
    else if (a == "--seed") seed = unsigned(std::atoi(arg_value(i, argc, argv)));
    else if (a == "--csv") csv_path = arg_value(i, argc, argv);
    else die("unknown argument '" + a + "' (usage: --optimizer LIB --lr LR [--steps N] "
             "[--seed S] [--csv FILE])");
  }
  if (lib_path.empty()) die("--optimizer LIB is required");
  if (!(lr > 0) || !std::isfinite(lr)) die("--lr must be a finite number > 0");
  if (steps < 0) die("--steps must be >= 0");

  void *handle = dlopen(lib_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) die(lib_path + ": cannot load: " + dlerror());
  using Entry = const SymocOptimizerApi *(*)();
  auto entry = reinterpret_cast<Entry>(dlsym(handle, "symoc_optimizer_api"));
  if (!entry) die(lib_path + ": not a symoc optimizer library (no symoc_optimizer_api)");
  const SymocOptimizerApi *api = entry();
  if (!api || api->abi_version != SYMOC_OPTIMIZER_ABI_VERSION)
    die(lib_path + ": optimizer ABI version mismatch");

  // The data and the teacher are the same for every run (fixed seeds); the student's
  // initialization depends on --seed.
  std::mt19937_64 data_rng(12345);
  auto rot = random_rotation(D_IN, data_rng);
  auto x_train = make_inputs(N_TRAIN, rot, data_rng);
  auto x_test = make_inputs(N_TEST, rot, data_rng);
  auto t1 = init_weight(D_H, D_IN, data_rng), t2 = init_weight(D_OUT, D_H, data_rng);
  std::vector<float> y_train, y_test, scratch;
  forward({t1.data(), t2.data()}, x_train.data(), N_TRAIN, scratch, y_train);
  forward({t1.data(), t2.data()}, x_test.data(), N_TEST, scratch, y_test);

  std::mt19937_64 init_rng(1000 + seed);
  auto w1 = init_weight(D_H, D_IN, init_rng), w2 = init_weight(D_OUT, D_H, init_rng);
  std::vector<float> g1, g2;

  // Map the library's parameters (plan order) onto ours by initializer name.
  const int n = api->num_params();
  std::vector<float *> wp(n);
  std::vector<const float *> gp(n);
  for (int i = 0; i < n; ++i) {
    const char *name = api->param_name(i);
    int64_t dims[SYMOC_OPTIMIZER_MAX_RANK];
    int rank = 0;
    api->param_shape(i, dims, &rank);
    std::string nm = name ? name : "";
    if (nm == "fc1.weight" && rank == 2 && dims[0] == D_H && dims[1] == D_IN) {
      wp[i] = w1.data();
    } else if (nm == "fc2.weight" && rank == 2 && dims[0] == D_OUT && dims[1] == D_H) {
      wp[i] = w2.data();
    } else {
      die(lib_path + ": parameter '" + nm + "' is not fc1.weight [70,100] or fc2.weight [40,70]"
          " (library compiled from another model?)");
    }
  }
  if (n != 2) die(lib_path + ": expected 2 parameters, the plan has " + std::to_string(n));

  SymocOptimizer *opt = api->create(float(lr));
  if (!opt) die(lib_path + ": create failed: " + api->last_error(nullptr));

  FILE *csv = nullptr;
  if (!csv_path.empty()) {
    csv = std::fopen(csv_path.c_str(), "w");
    if (!csv) die(csv_path + ": cannot write");
    std::fprintf(csv, "step,train_loss,test_loss\n");
  }
  std::printf("# policy %s, lr %g, seed %u\n# step train_loss test_loss\n", api->policy, lr, seed);
  Net net{w1.data(), w2.data()};
  for (int s = 0; s <= steps; ++s) {
    double train = loss_and_grad(net, x_train.data(), y_train, N_TRAIN, g1, g2);
    std::vector<float> a, y;
    forward(net, x_test.data(), N_TEST, a, y);
    double test = mse(y, y_test);
    std::printf("%d %.8g %.8g\n", s, train, test);
    if (csv) std::fprintf(csv, "%d,%.8g,%.8g\n", s, train, test);
    if (s == steps) break;
    for (int i = 0; i < n; ++i) gp[i] = wp[i] == w1.data() ? g1.data() : g2.data();
    if (api->step(opt, wp.data(), gp.data(), n) != SYMOC_OK)
      die(std::string("step failed: ") + api->last_error(opt));
  }
  if (api->steps_skipped(opt) > 0)
    std::printf("# %lld blocks skipped for non-finite gradients\n",
                (long long)api->steps_skipped(opt));
  if (csv) std::fclose(csv);
  api->destroy(opt);
  return 0;
}
