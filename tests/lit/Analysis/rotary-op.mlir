// symoc-recompose-rotary on IR with the tables inline (symo-opt has no model to read
// them from), and the rule of graph.Rotary on hand-written ops.
// RUN: split-file %s %t
// RUN: %symo-opt --symoc-recompose-rotary %t/good.mlir | FileCheck %s --check-prefix=GOOD
// RUN: %symo-opt --symoc-recompose-rotary %t/bad.mlir | FileCheck %s --check-prefix=BAD
// RUN: %symo-opt --symoc-recompose-rotary %t/noval.mlir | FileCheck %s --check-prefix=BAD
// RUN: %symo-opt --symoc-normalize --symoc-annotate-spaces %t/good.mlir | FileCheck %s --check-prefix=ANNOT
// RUN: %symo-opt --symoc-annotate-spaces %t/ops.mlir | FileCheck %s --check-prefix=OPS
// RUN: not %symo-opt %t/badattr.mlir 2>&1 | FileCheck %s --check-prefix=BADATTR
// BADATTR: error: 'graph.Rotary' op source must be a permutation and sign entries +-1

// Both rotate-half patterns become graph.Rotary; the Slice/Neg/Concat pieces go.
// GOOD-COUNT-2: graph.Rotary {{.*}}{axis = 1 : i64, pairs = array<i64: 0, 2, 1, 3>, sign = array<i64: -1, -1, 1, 1>, source = array<i64: 2, 3, 0, 1>}
// GOOD-NOT: graph.Slice
// GOOD-NOT: graph.Concat

// sin differs inside pair (0, 2) at position 2, or the tables have no value: left alone.
// BAD-NOT: graph.Rotary
// BAD: graph.Concat

// ANNOT: graph.param "Wq" {graph.groups = ["1", "SO(2)^2 x Scale+^2 (pairs i, i+2)"]
// ANNOT: graph.param "Wk" {graph.groups = ["1", "SO(2)^2 x Scale+^2 (pairs i, i+2)"]

// Hand-written Rotary ops: a pairing that leaves channels 2, 3 out, and a table that
// is a parameter (trained: need not stay a rotation), are barriers; a valid one
// (interleaved pairs) on q = X W2 against an unrotated k = X W3 gives the commutant.
// OPS: graph.param "W1" {graph.groups = ["1", "1"]
// OPS: graph.param "T" {graph.groups = ["1", "1"]
// OPS: graph.param "W2" {graph.groups = ["1", "SO(2)^2 x Scale+^2 (pairs 2i, 2i+1)"]
// OPS: graph.param "W3" {graph.groups = ["1", "SO(2)^2 x Scale+^2 (pairs 2i, 2i+1)"]

//--- good.mlir
module attributes {graph.opset = 17 : i64} {
  func.func @main(%arg0: tensor<3x4xf32> {graph.name = "X"}) -> (tensor<3x4xf32> {graph.name = "Y"}) {
    %0 = graph.param "Wq" : tensor<4x4xf32>
    %1 = graph.param "Wk" : tensor<4x4xf32>
    %2 = graph.param "Wv" : tensor<4x4xf32>
    %3 = graph.constant value dense<0> : tensor<1xi64> {name = "i0"} : tensor<1xi64>
    %4 = graph.constant value dense<2> : tensor<1xi64> {name = "i2"} : tensor<1xi64>
    %5 = graph.constant value dense<4> : tensor<1xi64> {name = "i4"} : tensor<1xi64>
    %6 = graph.constant value dense<-1> : tensor<1xi64> {name = "ax"} : tensor<1xi64>
    %7 = graph.constant value dense<[[1.0, 1.0, 1.0, 1.0], [0.5, 0.9, 0.5, 0.9], [-0.4, 0.8, -0.4, 0.8]]> : tensor<3x4xf32> {name = "C"} : tensor<3x4xf32>
    %8 = graph.constant value dense<[[0.0, 0.0, 0.0, 0.0], [0.8, 0.1, 0.8, 0.1], [0.9, 0.2, 0.9, 0.2]]> : tensor<3x4xf32> {name = "S"} : tensor<3x4xf32>
    %9 = graph.MatMul %arg0, %0 : (tensor<3x4xf32>, tensor<4x4xf32>) -> tensor<3x4xf32>
    %10 = graph.MatMul %arg0, %1 : (tensor<3x4xf32>, tensor<4x4xf32>) -> tensor<3x4xf32>
    %11 = graph.MatMul %arg0, %2 : (tensor<3x4xf32>, tensor<4x4xf32>) -> tensor<3x4xf32>
    %12 = graph.Slice %9, %3, %4, %6 : (tensor<3x4xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<3x2xf32>
    %13 = graph.Slice %9, %4, %5, %6 : (tensor<3x4xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<3x2xf32>
    %14 = graph.Neg %13 : (tensor<3x2xf32>) -> tensor<3x2xf32>
    %15 = graph.Concat %14, %12 {axis = -1 : i64} : (tensor<3x2xf32>, tensor<3x2xf32>) -> tensor<3x4xf32>
    %16 = graph.Mul %9, %7 : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %17 = graph.Mul %15, %8 : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %18 = graph.Add %16, %17 : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %19 = graph.Slice %10, %3, %4, %6 : (tensor<3x4xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<3x2xf32>
    %20 = graph.Slice %10, %4, %5, %6 : (tensor<3x4xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<3x2xf32>
    %21 = graph.Neg %20 : (tensor<3x2xf32>) -> tensor<3x2xf32>
    %22 = graph.Concat %21, %19 {axis = -1 : i64} : (tensor<3x2xf32>, tensor<3x2xf32>) -> tensor<3x4xf32>
    %23 = graph.Mul %10, %7 : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %24 = graph.Mul %22, %8 : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %25 = graph.Add %23, %24 : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %26 = graph.Transpose %25 {perm = [1, 0]} : (tensor<3x4xf32>) -> tensor<4x3xf32>
    %27 = graph.MatMul %18, %26 : (tensor<3x4xf32>, tensor<4x3xf32>) -> tensor<3x3xf32>
    %28 = graph.Softmax %27 {axis = -1 : i64} : (tensor<3x3xf32>) -> tensor<3x3xf32>
    %29 = graph.MatMul %28, %11 : (tensor<3x3xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    return %29 : tensor<3x4xf32>
  }
}

//--- bad.mlir
module attributes {graph.opset = 17 : i64} {
  func.func @main(%arg0: tensor<3x4xf32> {graph.name = "X"}) -> (tensor<3x4xf32> {graph.name = "Y"}) {
    %0 = graph.param "Wq" : tensor<4x4xf32>
    %1 = graph.param "Wk" : tensor<4x4xf32>
    %2 = graph.param "Wv" : tensor<4x4xf32>
    %3 = graph.constant value dense<0> : tensor<1xi64> {name = "i0"} : tensor<1xi64>
    %4 = graph.constant value dense<2> : tensor<1xi64> {name = "i2"} : tensor<1xi64>
    %5 = graph.constant value dense<4> : tensor<1xi64> {name = "i4"} : tensor<1xi64>
    %6 = graph.constant value dense<-1> : tensor<1xi64> {name = "ax"} : tensor<1xi64>
    %7 = graph.constant value dense<[[1.0, 1.0, 1.0, 1.0], [0.5, 0.9, 0.5, 0.9], [-0.4, 0.8, -0.4, 0.8]]> : tensor<3x4xf32> {name = "C"} : tensor<3x4xf32>
    %8 = graph.constant value dense<[[0.0, 0.0, 0.0, 0.0], [0.8, 0.1, 0.8, 0.1], [0.9, 0.2, 0.7, 0.2]]> : tensor<3x4xf32> {name = "S"} : tensor<3x4xf32>
    %9 = graph.MatMul %arg0, %0 : (tensor<3x4xf32>, tensor<4x4xf32>) -> tensor<3x4xf32>
    %10 = graph.MatMul %arg0, %1 : (tensor<3x4xf32>, tensor<4x4xf32>) -> tensor<3x4xf32>
    %11 = graph.MatMul %arg0, %2 : (tensor<3x4xf32>, tensor<4x4xf32>) -> tensor<3x4xf32>
    %12 = graph.Slice %9, %3, %4, %6 : (tensor<3x4xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<3x2xf32>
    %13 = graph.Slice %9, %4, %5, %6 : (tensor<3x4xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<3x2xf32>
    %14 = graph.Neg %13 : (tensor<3x2xf32>) -> tensor<3x2xf32>
    %15 = graph.Concat %14, %12 {axis = -1 : i64} : (tensor<3x2xf32>, tensor<3x2xf32>) -> tensor<3x4xf32>
    %16 = graph.Mul %9, %7 : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %17 = graph.Mul %15, %8 : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %18 = graph.Add %16, %17 : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %19 = graph.Slice %10, %3, %4, %6 : (tensor<3x4xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<3x2xf32>
    %20 = graph.Slice %10, %4, %5, %6 : (tensor<3x4xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<3x2xf32>
    %21 = graph.Neg %20 : (tensor<3x2xf32>) -> tensor<3x2xf32>
    %22 = graph.Concat %21, %19 {axis = -1 : i64} : (tensor<3x2xf32>, tensor<3x2xf32>) -> tensor<3x4xf32>
    %23 = graph.Mul %10, %7 : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %24 = graph.Mul %22, %8 : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %25 = graph.Add %23, %24 : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %26 = graph.Transpose %25 {perm = [1, 0]} : (tensor<3x4xf32>) -> tensor<4x3xf32>
    %27 = graph.MatMul %18, %26 : (tensor<3x4xf32>, tensor<4x3xf32>) -> tensor<3x3xf32>
    %28 = graph.Softmax %27 {axis = -1 : i64} : (tensor<3x3xf32>) -> tensor<3x3xf32>
    %29 = graph.MatMul %28, %11 : (tensor<3x3xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    return %29 : tensor<3x4xf32>
  }
}

//--- noval.mlir
module attributes {graph.opset = 17 : i64} {
  func.func @main(%arg0: tensor<3x4xf32> {graph.name = "X"}) -> (tensor<3x4xf32> {graph.name = "Y"}) {
    %0 = graph.param "Wq" : tensor<4x4xf32>
    %1 = graph.param "Wk" : tensor<4x4xf32>
    %2 = graph.param "Wv" : tensor<4x4xf32>
    %3 = graph.constant value dense<0> : tensor<1xi64> {name = "i0"} : tensor<1xi64>
    %4 = graph.constant value dense<2> : tensor<1xi64> {name = "i2"} : tensor<1xi64>
    %5 = graph.constant value dense<4> : tensor<1xi64> {name = "i4"} : tensor<1xi64>
    %6 = graph.constant value dense<-1> : tensor<1xi64> {name = "ax"} : tensor<1xi64>
    %7 = graph.constant {name = "C"} : tensor<3x4xf32>
    %8 = graph.constant {name = "S"} : tensor<3x4xf32>
    %9 = graph.MatMul %arg0, %0 : (tensor<3x4xf32>, tensor<4x4xf32>) -> tensor<3x4xf32>
    %10 = graph.MatMul %arg0, %1 : (tensor<3x4xf32>, tensor<4x4xf32>) -> tensor<3x4xf32>
    %11 = graph.MatMul %arg0, %2 : (tensor<3x4xf32>, tensor<4x4xf32>) -> tensor<3x4xf32>
    %12 = graph.Slice %9, %3, %4, %6 : (tensor<3x4xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<3x2xf32>
    %13 = graph.Slice %9, %4, %5, %6 : (tensor<3x4xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<3x2xf32>
    %14 = graph.Neg %13 : (tensor<3x2xf32>) -> tensor<3x2xf32>
    %15 = graph.Concat %14, %12 {axis = -1 : i64} : (tensor<3x2xf32>, tensor<3x2xf32>) -> tensor<3x4xf32>
    %16 = graph.Mul %9, %7 : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %17 = graph.Mul %15, %8 : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %18 = graph.Add %16, %17 : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %19 = graph.Slice %10, %3, %4, %6 : (tensor<3x4xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<3x2xf32>
    %20 = graph.Slice %10, %4, %5, %6 : (tensor<3x4xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<3x2xf32>
    %21 = graph.Neg %20 : (tensor<3x2xf32>) -> tensor<3x2xf32>
    %22 = graph.Concat %21, %19 {axis = -1 : i64} : (tensor<3x2xf32>, tensor<3x2xf32>) -> tensor<3x4xf32>
    %23 = graph.Mul %10, %7 : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %24 = graph.Mul %22, %8 : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %25 = graph.Add %23, %24 : (tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %26 = graph.Transpose %25 {perm = [1, 0]} : (tensor<3x4xf32>) -> tensor<4x3xf32>
    %27 = graph.MatMul %18, %26 : (tensor<3x4xf32>, tensor<4x3xf32>) -> tensor<3x3xf32>
    %28 = graph.Softmax %27 {axis = -1 : i64} : (tensor<3x3xf32>) -> tensor<3x3xf32>
    %29 = graph.MatMul %28, %11 : (tensor<3x3xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    return %29 : tensor<3x4xf32>
  }
}

//--- ops.mlir
module attributes {graph.opset = 17 : i64} {
  func.func @main(%arg0: tensor<3x4xf32>) -> (tensor<3x3xf32>, tensor<3x3xf32>) {
    %w1 = graph.param "W1" : tensor<4x4xf32>
    %t = graph.param "T" : tensor<3x4xf32>
    %w2 = graph.param "W2" : tensor<4x4xf32>
    %w3 = graph.param "W3" : tensor<4x4xf32>
    %c = graph.constant value dense<1.0> : tensor<3x4xf32> {name = "c"} : tensor<3x4xf32>
    %x1 = graph.MatMul %arg0, %w1 : (tensor<3x4xf32>, tensor<4x4xf32>) -> tensor<3x4xf32>
    %r1 = graph.Rotary %x1, %c, %c {axis = 1 : i64, source = array<i64: 1, 0, 2, 3>, sign = array<i64: -1, 1, 1, 1>, pairs = array<i64: 0, 1>} : (tensor<3x4xf32>, tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %r2 = graph.Rotary %x1, %c, %t {axis = 1 : i64, source = array<i64: 1, 0, 3, 2>, sign = array<i64: -1, 1, -1, 1>, pairs = array<i64: 0, 1, 2, 3>} : (tensor<3x4xf32>, tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %t2 = graph.Transpose %r2 {perm = [1, 0]} : (tensor<3x4xf32>) -> tensor<4x3xf32>
    %s2 = graph.MatMul %r1, %t2 : (tensor<3x4xf32>, tensor<4x3xf32>) -> tensor<3x3xf32>
    %x3 = graph.MatMul %arg0, %w2 : (tensor<3x4xf32>, tensor<4x4xf32>) -> tensor<3x4xf32>
    %r3 = graph.Rotary %x3, %c, %c {axis = -1 : i64, source = array<i64: 1, 0, 3, 2>, sign = array<i64: -1, 1, -1, 1>, pairs = array<i64: 0, 1, 2, 3>} : (tensor<3x4xf32>, tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
    %k3 = graph.MatMul %arg0, %w3 : (tensor<3x4xf32>, tensor<4x4xf32>) -> tensor<3x4xf32>
    %t3 = graph.Transpose %k3 {perm = [1, 0]} : (tensor<3x4xf32>) -> tensor<4x3xf32>
    %s3 = graph.MatMul %r3, %t3 : (tensor<3x4xf32>, tensor<4x3xf32>) -> tensor<3x3xf32>
    return %s2, %s3 : tensor<3x3xf32>, tensor<3x3xf32>
  }
}
//--- badattr.mlir
func.func @main(%arg0: tensor<3x4xf32>, %c: tensor<3x4xf32>) -> tensor<3x4xf32> {
  %r = graph.Rotary %arg0, %c, %c {axis = 1 : i64, source = array<i64: 1, 1, 3, 2>, sign = array<i64: -1, 1, -1, 1>, pairs = array<i64: 0, 1, 2, 3>} : (tensor<3x4xf32>, tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
  return %r : tensor<3x4xf32>
}
