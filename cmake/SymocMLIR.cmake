# Finds LLVM/MLIR 19 (Debian's libmlir-19-dev) and sets up TableGen and lit.
find_package(MLIR REQUIRED CONFIG PATHS /usr/lib/llvm-19/lib/cmake/mlir NO_DEFAULT_PATH)
if(NOT LLVM_VERSION_MAJOR EQUAL 19)
  message(FATAL_ERROR "symoc needs LLVM/MLIR 19 (found ${LLVM_PACKAGE_VERSION} at ${MLIR_DIR}); "
                      "install libmlir-19-dev or run tools/install-deps.sh")
endif()
message(STATUS "Using MLIR ${LLVM_PACKAGE_VERSION} from ${MLIR_DIR}")

# The relocatable package (tools/package.sh) links LLVM's components statically. Debian builds
# MLIR's static libraries against the LLVM shared library (the imported target `LLVM`, which
# LLVM_LINK_LLVM_DYLIB also makes every tool link): point that target at a linker script that
# groups Debian's static libLLVM*.a instead, so nothing else changes. The linker pulls only
# what symoc uses from the archives.
option(SYMOC_STATIC_LLVM "link LLVM statically (tools/package.sh)" OFF)
if(SYMOC_STATIC_LLVM)
  file(GLOB SYMOC_LLVM_ARCHIVES "${LLVM_LIBRARY_DIR}/libLLVM*.a")
  if(NOT SYMOC_LLVM_ARCHIVES)
    message(FATAL_ERROR "SYMOC_STATIC_LLVM: no libLLVM*.a in ${LLVM_LIBRARY_DIR} (install llvm-19-dev)")
  endif()
  list(JOIN SYMOC_LLVM_ARCHIVES " " SYMOC_LLVM_GROUP)
  set(SYMOC_LLVM_SCRIPT ${CMAKE_BINARY_DIR}/libLLVM-static.ld)
  file(WRITE ${SYMOC_LLVM_SCRIPT} "GROUP ( ${SYMOC_LLVM_GROUP} )\n")
  execute_process(COMMAND ${LLVM_TOOLS_BINARY_DIR}/llvm-config --link-static --system-libs
                  OUTPUT_VARIABLE SYMOC_LLVM_SYSLIBS OUTPUT_STRIP_TRAILING_WHITESPACE)
  separate_arguments(SYMOC_LLVM_SYSLIBS_RAW UNIX_COMMAND "${SYMOC_LLVM_SYSLIBS}")
  # What LLVM was built with (zstd, libxml2, z3) may lack its -dev package here: link the
  # runtime library itself then (by soname) and let --as-needed drop what is unused.
  set(SYMOC_LLVM_SYSLIBS)
  foreach(lib ${SYMOC_LLVM_SYSLIBS_RAW})
    if(lib MATCHES "^-l(.+)$")
      set(name ${CMAKE_MATCH_1})
      find_library(SYMOC_SYSLIB_${name} NAMES ${name} lib${name}.so.1 lib${name}.so.2)
      if(SYMOC_SYSLIB_${name})
        list(APPEND SYMOC_LLVM_SYSLIBS ${SYMOC_SYSLIB_${name}})
      endif()
    elseif(EXISTS ${lib})
      list(APPEND SYMOC_LLVM_SYSLIBS ${lib})
    endif()
  endforeach()
  foreach(cfg "" _RELEASE _RELWITHDEBINFO _DEBUG _MINSIZEREL)
    set_target_properties(LLVM PROPERTIES IMPORTED_LOCATION${cfg} ${SYMOC_LLVM_SCRIPT}
                                          IMPORTED_SONAME${cfg} libLLVM-static.ld)
  endforeach()
  set_property(TARGET LLVM PROPERTY INTERFACE_LINK_LIBRARIES ${SYMOC_LLVM_SYSLIBS})
  message(STATUS "Linking LLVM statically: ${SYMOC_LLVM_SCRIPT}")
endif()

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
