# lit configuration for symoc's FileCheck tests (tests/lit/**).
# Substitutions:
#   %symoc %symo-opt       the tools from the build tree
#   %models                the committed ONNX fixtures (models/)
#   %python                Debian's /usr/bin/python3 (has onnx and numpy)
import os

import lit.formats
import lit.util

config.name = "symoc"
config.test_format = lit.formats.ShTest(not lit.util.which("bash") is None)
config.suffixes = [".test", ".onnxtxt", ".mlir"]
# Inputs that tests read through split-file or %S, not tests themselves.
config.excludes = ["Inputs", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py.in"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.symoc_obj_root, "tests", "lit")

# The tools under test first, then FileCheck / not / count / split-file, then the
# system's (no pyenv shims: `python3` in a RUN line would miss onnx).
path = [config.symoc_tools_dir, config.llvm_tools_dir]
config.environment["PATH"] = os.pathsep.join(
    path + ["/usr/local/bin", "/usr/bin", "/bin"])
# A pyenv python3 may shadow Debian's; tests call %python explicitly.
for var in ("PYTHONPATH", "PYENV_VERSION"):
    config.environment.pop(var, None)

config.substitutions.append(("%symoc", os.path.join(config.symoc_tools_dir, "symoc")))
config.substitutions.append(("%symo-opt", os.path.join(config.symoc_tools_dir, "symo-opt")))
config.substitutions.append(("%models", os.path.join(config.symoc_src_root, "models")))
config.substitutions.append(("%python", config.python_executable))

# Features tests may REQUIRE.
if os.path.isdir("/usr/share/libonnx-testdata/data"):
    config.available_features.add("onnx-testdata")
if os.path.isdir("/work/shared"):
    config.available_features.add("shared")
