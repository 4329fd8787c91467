// symoc-canonicalize-sliced-rotary: cat(x1 c - x2 s, x2 c + x1 s) on the two halves of an
// axis becomes x * cat(c, c) + cat(-x2, x1) * cat(s, s) (rotate-half), which
// symoc-recompose-rotary then turns into graph.Rotary. Equal signs or a second cos table
// with other values are left alone. Tables inline (symo-opt has no model to read).
// RUN: %symo-opt --symoc-canonicalize-sliced-rotary %s | FileCheck %s
// RUN: %symo-opt --symoc-canonicalize-sliced-rotary --symoc-recompose-rotary %s | FileCheck %s --check-prefix=ROT

// Second-half cos is another constant with the same values (as torch exports each use
// of a tensor attribute), written c2 * x2 + x1 * s: the same tables.
// CHECK-LABEL: func.func @sliced
// CHECK: %[[C:.*]] = graph.constant value dense<{{\[\[}}1.0
// CHECK-NEXT: %[[S:.*]] = graph.constant value dense<{{\[\[}}0.0
// CHECK-NEXT: %[[CC:.*]] = graph.Concat %[[C]], %[[C]] {axis = 1 : i64} {{.*}} -> tensor<3x4xf32>
// CHECK-NEXT: %[[SS:.*]] = graph.Concat %[[S]], %[[S]] {axis = 1 : i64} {{.*}} -> tensor<3x4xf32>
// CHECK: %[[LO:.*]] = graph.Slice %arg0, {{.*}} -> tensor<1x3x2xf32>
// CHECK: %[[HI:.*]] = graph.Slice %arg0, {{.*}} -> tensor<1x3x2xf32>
// CHECK-NEXT: %[[N:.*]] = graph.Neg %[[HI]]
// CHECK-NEXT: %[[G:.*]] = graph.Concat %[[N]], %[[LO]] {axis = 2 : i64}
// CHECK-NEXT: %[[XC:.*]] = graph.Mul %arg0, %[[CC]]
// CHECK-NEXT: %[[GS:.*]] = graph.Mul %[[G]], %[[SS]]
// CHECK-NEXT: %[[Y:.*]] = graph.Add %[[XC]], %[[GS]]
// CHECK-NEXT: return %[[Y]]
// CHECK-LABEL: func.func @sign
// CHECK-NOT: graph.Neg
// CHECK: graph.Concat %{{.*}}, %{{.*}} {axis = 2 : i64} : (tensor<1x3x2xf32>, tensor<1x3x2xf32>)
// CHECK-LABEL: func.func @tables
// CHECK-NOT: graph.Neg
// CHECK: graph.Concat %{{.*}}, %{{.*}} {axis = 2 : i64} : (tensor<1x3x2xf32>, tensor<1x3x2xf32>)

// ROT-LABEL: func.func @sliced
// ROT: graph.Rotary %arg0, %{{.*}}, %{{.*}} {axis = 2 : i64, pairs = array<i64: 0, 2, 1, 3>, sign = array<i64: -1, -1, 1, 1>, source = array<i64: 2, 3, 0, 1>}
// ROT-LABEL: func.func @sign
// ROT-NOT: graph.Rotary
// ROT-LABEL: func.func @tables
// ROT-NOT: graph.Rotary

module attributes {graph.opset = 17 : i64} {
  func.func @sliced(%x: tensor<1x3x4xf32>) -> tensor<1x3x4xf32> {
    %c = graph.constant value dense<[[1.0, 1.0], [0.5, 0.9], [-0.4, 0.8]]> : tensor<3x2xf32> : tensor<3x2xf32>
    %s = graph.constant value dense<[[0.0, 0.0], [0.8, 0.1], [0.9, 0.2]]> : tensor<3x2xf32> : tensor<3x2xf32>
    %c2 = graph.constant value dense<[[1.0, 1.0], [0.5, 0.9], [-0.4, 0.8]]> : tensor<3x2xf32> : tensor<3x2xf32>
    %z = graph.constant value dense<0> : tensor<1xi64> : tensor<1xi64>
    %h = graph.constant value dense<2> : tensor<1xi64> : tensor<1xi64>
    %e = graph.constant value dense<4> : tensor<1xi64> : tensor<1xi64>
    %a = graph.constant value dense<-1> : tensor<1xi64> : tensor<1xi64>
    %x1 = graph.Slice %x, %z, %h, %a : (tensor<1x3x4xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<1x3x2xf32>
    %x2 = graph.Slice %x, %h, %e, %a : (tensor<1x3x4xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<1x3x2xf32>
    %p = graph.Mul %x1, %c : (tensor<1x3x2xf32>, tensor<3x2xf32>) -> tensor<1x3x2xf32>
    %q = graph.Mul %x2, %s : (tensor<1x3x2xf32>, tensor<3x2xf32>) -> tensor<1x3x2xf32>
    %lo = graph.Sub %p, %q : (tensor<1x3x2xf32>, tensor<1x3x2xf32>) -> tensor<1x3x2xf32>
    %r = graph.Mul %c2, %x2 : (tensor<3x2xf32>, tensor<1x3x2xf32>) -> tensor<1x3x2xf32>
    %t = graph.Mul %x1, %s : (tensor<1x3x2xf32>, tensor<3x2xf32>) -> tensor<1x3x2xf32>
    %hi = graph.Add %t, %r : (tensor<1x3x2xf32>, tensor<1x3x2xf32>) -> tensor<1x3x2xf32>
    %y = graph.Concat %lo, %hi {axis = 2 : i64} : (tensor<1x3x2xf32>, tensor<1x3x2xf32>) -> tensor<1x3x4xf32>
    return %y : tensor<1x3x4xf32>
  }
  // Equal signs: x2 c - x1 s in the second half (a reflection, not a rotation).
  func.func @sign(%x: tensor<1x3x4xf32>) -> tensor<1x3x4xf32> {
    %c = graph.constant value dense<[[1.0, 1.0], [0.5, 0.9], [-0.4, 0.8]]> : tensor<3x2xf32> : tensor<3x2xf32>
    %s = graph.constant value dense<[[0.0, 0.0], [0.8, 0.1], [0.9, 0.2]]> : tensor<3x2xf32> : tensor<3x2xf32>
    %sp = graph.constant value dense<2> : tensor<2xi64> : tensor<2xi64>
    %x1, %x2 = graph.Split %x, %sp {axis = 2 : i64} : (tensor<1x3x4xf32>, tensor<2xi64>) -> (tensor<1x3x2xf32>, tensor<1x3x2xf32>)
    %p = graph.Mul %x1, %c : (tensor<1x3x2xf32>, tensor<3x2xf32>) -> tensor<1x3x2xf32>
    %q = graph.Mul %x2, %s : (tensor<1x3x2xf32>, tensor<3x2xf32>) -> tensor<1x3x2xf32>
    %lo = graph.Sub %p, %q : (tensor<1x3x2xf32>, tensor<1x3x2xf32>) -> tensor<1x3x2xf32>
    %r = graph.Mul %x2, %c : (tensor<1x3x2xf32>, tensor<3x2xf32>) -> tensor<1x3x2xf32>
    %t = graph.Mul %x1, %s : (tensor<1x3x2xf32>, tensor<3x2xf32>) -> tensor<1x3x2xf32>
    %hi = graph.Sub %r, %t : (tensor<1x3x2xf32>, tensor<1x3x2xf32>) -> tensor<1x3x2xf32>
    %y = graph.Concat %lo, %hi {axis = 2 : i64} : (tensor<1x3x2xf32>, tensor<1x3x2xf32>) -> tensor<1x3x4xf32>
    return %y : tensor<1x3x4xf32>
  }
  // A different cos table in the second half.
  func.func @tables(%x: tensor<1x3x4xf32>) -> tensor<1x3x4xf32> {
    %c = graph.constant value dense<[[1.0, 1.0], [0.5, 0.9], [-0.4, 0.8]]> : tensor<3x2xf32> : tensor<3x2xf32>
    %s = graph.constant value dense<[[0.0, 0.0], [0.8, 0.1], [0.9, 0.2]]> : tensor<3x2xf32> : tensor<3x2xf32>
    %c2 = graph.constant value dense<[[1.0, 1.0], [0.5, 0.9], [-0.4, 0.7]]> : tensor<3x2xf32> : tensor<3x2xf32>
    %sp = graph.constant value dense<2> : tensor<2xi64> : tensor<2xi64>
    %x1, %x2 = graph.Split %x, %sp {axis = 2 : i64} : (tensor<1x3x4xf32>, tensor<2xi64>) -> (tensor<1x3x2xf32>, tensor<1x3x2xf32>)
    %p = graph.Mul %x1, %c : (tensor<1x3x2xf32>, tensor<3x2xf32>) -> tensor<1x3x2xf32>
    %q = graph.Mul %x2, %s : (tensor<1x3x2xf32>, tensor<3x2xf32>) -> tensor<1x3x2xf32>
    %lo = graph.Sub %p, %q : (tensor<1x3x2xf32>, tensor<1x3x2xf32>) -> tensor<1x3x2xf32>
    %r = graph.Mul %x2, %c2 : (tensor<1x3x2xf32>, tensor<3x2xf32>) -> tensor<1x3x2xf32>
    %t = graph.Mul %x1, %s : (tensor<1x3x2xf32>, tensor<3x2xf32>) -> tensor<1x3x2xf32>
    %hi = graph.Add %r, %t : (tensor<1x3x2xf32>, tensor<1x3x2xf32>) -> tensor<1x3x2xf32>
    %y = graph.Concat %lo, %hi {axis = 2 : i64} : (tensor<1x3x2xf32>, tensor<1x3x2xf32>) -> tensor<1x3x4xf32>
    return %y : tensor<1x3x4xf32>
  }
}
