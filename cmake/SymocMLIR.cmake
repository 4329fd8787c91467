# Finds LLVM/MLIR 19 (Debian's libmlir-19-dev) and sets up TableGen and lit.
find_package(MLIR REQUIRED CONFIG PATHS /usr/lib/llvm-19/lib/cmake/mlir NO_DEFAULT_PATH)
if(NOT LLVM_VERSION_MAJOR EQUAL 19)
  message(FATAL_ERROR "symoc needs LLVM/MLIR 19 (found ${LLVM_PACKAGE_VERSION} at ${MLIR_DIR}); "
                      "install libmlir-19-dev or run tools/install-deps.sh")
endif()
message(STATUS "Using MLIR ${LLVM_PACKAGE_VERSION} from ${MLIR_DIR}")

list(APPEND CMAKE_MODULE_PATH "${MLIR_CMAKE_DIR}" "${LLVM_CMAKE_DIR}")
set(LLVM_RUNTIME_OUTPUT_INTDIR ${CMAKE_BINARY_DIR}/bin)
set(LLVM_LIBRARY_OUTPUT_INTDIR ${CMAKE_BINARY_DIR}/lib)
set(MLIR_BINARY_DIR ${CMAKE_BINARY_DIR})
include(TableGen)
include(AddLLVM)
include(AddMLIR)
include(HandleLLVMOptions)

# protobuf / ONNX code throws; LLVM's flags would add -fno-exceptions.
set(LLVM_REQUIRES_EH ON)
set(LLVM_REQUIRES_RTTI ON)
string(REPLACE "-fno-exceptions" "" CMAKE_CXX_FLAGS "${CMAKE_CXX_FLAGS}")

include_directories(SYSTEM ${LLVM_INCLUDE_DIRS} ${MLIR_INCLUDE_DIRS})
include_directories(${PROJECT_SOURCE_DIR}/dialects/include ${PROJECT_BINARY_DIR}/dialects/include)
include_directories(${PROJECT_SOURCE_DIR}/compiler/include ${PROJECT_BINARY_DIR}/compiler/include)
link_directories(${LLVM_BUILD_LIBRARY_DIR})
add_definitions(${LLVM_DEFINITIONS})

find_package(Protobuf REQUIRED)
find_package(ONNX CONFIG REQUIRED)
find_package(fmt REQUIRED)
find_package(nlohmann_json REQUIRED)

set(LLVM_EXTERNAL_LIT /usr/lib/llvm-19/build/utils/lit/lit.py CACHE STRING "")
