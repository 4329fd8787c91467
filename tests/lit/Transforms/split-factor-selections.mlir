// symoc-split-factor-selections: selections along one factor of a split axis are rebuilt
// from slices of the unsplit axis (exact); anything else is left alone.
// RUN: %symo-opt --symoc-split-factor-selections %s | FileCheck %s

// timm: (B, N, 3, H, d) permuted (2, 0, 3, 1, 4), Gather 0 / 1 / -1: one Slice of the
// unsplit axis each, the (H, d) split, the Transpose without the factor axis.
// CHECK-LABEL: func.func @timm
// CHECK-NOT: graph.Gather
// CHECK: %[[A:.*]] = graph.constant value dense<0>
// CHECK-NEXT: %[[B:.*]] = graph.constant value dense<8>
// CHECK-NEXT: %[[X:.*]] = graph.constant value dense<2>
// CHECK-NEXT: %[[Q:.*]] = graph.Slice %arg0, %[[A]], %[[B]], %[[X]] : {{.*}} -> tensor<2x5x8xf32>
// CHECK: %[[QR:.*]] = graph.Reshape %[[Q]], %{{.*}} -> tensor<2x5x2x4xf32>
// CHECK-NEXT: %[[QT:.*]] = graph.Transpose %[[QR]] {perm = [0, 2, 1, 3]} {{.*}} -> tensor<2x2x5x4xf32>
// CHECK: graph.constant value dense<8>
// CHECK-NEXT: graph.constant value dense<16>
// CHECK: graph.constant value dense<16>
// CHECK-NEXT: graph.constant value dense<24>
// CHECK-NOT: graph.Gather
// CHECK: return %[[QT]],

// (H, 3, d) Split [1, 2] along the factor: slot 0 is one Slice of Reshape(x, (H, 3d));
// slots 1..2 are the blocks [4, 12) and [16, 24), concatenated and reshaped.
// CHECK-LABEL: func.func @h3d
// CHECK-NOT: graph.Split
// CHECK: %[[P:.*]] = graph.Reshape %arg0, %{{.*}} -> tensor<2x5x2x12xf32>
// CHECK: %[[S0:.*]] = graph.Slice %[[P]], {{.*}} -> tensor<2x5x2x4xf32>
// CHECK: %[[R0:.*]] = graph.Reshape %[[S0]], {{.*}} -> tensor<2x5x2x1x4xf32>
// CHECK: graph.constant value dense<4>
// CHECK-NEXT: graph.constant value dense<12>
// CHECK: %[[B0:.*]] = graph.Slice %arg0, {{.*}} -> tensor<2x5x8xf32>
// CHECK: graph.constant value dense<16>
// CHECK-NEXT: graph.constant value dense<24>
// CHECK: %[[B1:.*]] = graph.Slice %arg0, {{.*}} -> tensor<2x5x8xf32>
// CHECK: %[[C:.*]] = graph.Concat %[[B0]], %[[B1]] {axis = 2 : i64}
// CHECK: %[[R1:.*]] = graph.Reshape %[[C]], {{.*}} -> tensor<2x5x2x2x4xf32>
// CHECK: return %[[R0]], %[[R1]]

// Grouped (KV, g + 2, d): q's Slice and its merging Reshape fold into one Slice of
// Reshape(x, (KV, (g + 2) d)); k = Gather -2 is the Slice [4, 8) of it.
// CHECK-LABEL: func.func @gqa
// CHECK: %[[P:.*]] = graph.Reshape %arg0, %{{.*}} -> tensor<2x5x2x12xf32>
// CHECK: %[[Q:.*]] = graph.Slice %[[P]], {{.*}} -> tensor<2x5x2x4xf32>
// CHECK: graph.constant value dense<4>
// CHECK-NEXT: graph.constant value dense<8>
// CHECK-NEXT: graph.constant value dense<3>
// CHECK-NEXT: %[[K:.*]] = graph.Slice %[[P]], {{.*}} -> tensor<2x5x2x4xf32>
// CHECK-NEXT: return %[[Q]], %[[K]]

// Left alone: a non-constant index, indices [2, 1], a use that is not a selection.
// CHECK-LABEL: func.func @alone
// CHECK-NOT: graph.Slice
// CHECK: graph.Gather %{{.*}}, %arg1
// CHECK: graph.Gather %{{.*}}, %{{.*}} {axis = 2 : i64} : (tensor<2x5x3x2x4xf32>, tensor<2xi64>)
// CHECK: graph.Gather %{{.*}}, %{{.*}} {axis = 2 : i64} : (tensor<2x5x3x2x4xf32>, tensor<i64>)
// CHECK-NOT: graph.Slice

module attributes {graph.opset = 17 : i64} {
  // timm: (B, N, 3, H, d), permute(2, 0, 3, 1, 4), Gather 0 / 1 / 2.
  func.func @timm(%x: tensor<2x5x24xf32>) -> (tensor<2x2x5x4xf32>, tensor<2x2x5x4xf32>, tensor<2x2x5x4xf32>) {
    %s = graph.constant value dense<[2, 5, 3, 2, 4]> : tensor<5xi64> : tensor<5xi64>
    %r = graph.Reshape %x, %s : (tensor<2x5x24xf32>, tensor<5xi64>) -> tensor<2x5x3x2x4xf32>
    %t = graph.Transpose %r {perm = [2, 0, 3, 1, 4]} : (tensor<2x5x3x2x4xf32>) -> tensor<3x2x2x5x4xf32>
    %i0 = graph.constant value dense<0> : tensor<i64> : tensor<i64>
    %i1 = graph.constant value dense<1> : tensor<i64> : tensor<i64>
    %i2 = graph.constant value dense<-1> : tensor<i64> : tensor<i64>
    %q = graph.Gather %t, %i0 {axis = 0 : i64} : (tensor<3x2x2x5x4xf32>, tensor<i64>) -> tensor<2x2x5x4xf32>
    %k = graph.Gather %t, %i1 {axis = 0 : i64} : (tensor<3x2x2x5x4xf32>, tensor<i64>) -> tensor<2x2x5x4xf32>
    %v = graph.Gather %t, %i2 {axis = 0 : i64} : (tensor<3x2x2x5x4xf32>, tensor<i64>) -> tensor<2x2x5x4xf32>
    return %q, %k, %v : tensor<2x2x5x4xf32>, tensor<2x2x5x4xf32>, tensor<2x2x5x4xf32>
  }
  // (H, 3, d): Split along the factor.
  func.func @h3d(%x: tensor<2x5x24xf32>) -> (tensor<2x5x2x1x4xf32>, tensor<2x5x2x2x4xf32>) {
    %s = graph.constant value dense<[2, 5, 2, 3, 4]> : tensor<5xi64> : tensor<5xi64>
    %r = graph.Reshape %x, %s : (tensor<2x5x24xf32>, tensor<5xi64>) -> tensor<2x5x2x3x4xf32>
    %sp = graph.constant value dense<[1, 2]> : tensor<2xi64> : tensor<2xi64>
    %a, %b = graph.Split %r, %sp {axis = 3 : i64} : (tensor<2x5x2x3x4xf32>, tensor<2xi64>) -> (tensor<2x5x2x1x4xf32>, tensor<2x5x2x2x4xf32>)
    return %a, %b : tensor<2x5x2x1x4xf32>, tensor<2x5x2x2x4xf32>
  }
  // Grouped (KV=2, g+2=3, d=4): q = [..., :1, :] then merged; k = [..., -2, :].
  func.func @gqa(%x: tensor<2x5x24xf32>) -> (tensor<2x5x2x4xf32>, tensor<2x5x2x4xf32>) {
    %s = graph.constant value dense<[2, 5, 2, 3, 4]> : tensor<5xi64> : tensor<5xi64>
    %r = graph.Reshape %x, %s : (tensor<2x5x24xf32>, tensor<5xi64>) -> tensor<2x5x2x3x4xf32>
    %st = graph.constant value dense<0> : tensor<1xi64> : tensor<1xi64>
    %en = graph.constant value dense<1> : tensor<1xi64> : tensor<1xi64>
    %ax = graph.constant value dense<3> : tensor<1xi64> : tensor<1xi64>
    %q5 = graph.Slice %r, %st, %en, %ax : (tensor<2x5x2x3x4xf32>, tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<2x5x2x1x4xf32>
    %qs = graph.constant value dense<[2, 5, 2, 4]> : tensor<4xi64> : tensor<4xi64>
    %q = graph.Reshape %q5, %qs : (tensor<2x5x2x1x4xf32>, tensor<4xi64>) -> tensor<2x5x2x4xf32>
    %im = graph.constant value dense<-2> : tensor<i64> : tensor<i64>
    %k = graph.Gather %r, %im {axis = 3 : i64} : (tensor<2x5x2x3x4xf32>, tensor<i64>) -> tensor<2x5x2x4xf32>
    return %q, %k : tensor<2x5x2x4xf32>, tensor<2x5x2x4xf32>
  }
  // Left alone: a non-constant index, indices not an ascending range, another use.
  func.func @alone(%x: tensor<2x5x24xf32>, %i: tensor<i64>) -> (tensor<2x5x2x4xf32>, tensor<2x5x2x2x4xf32>, tensor<2x5x3x2x4xf32>) {
    %s = graph.constant value dense<[2, 5, 3, 2, 4]> : tensor<5xi64> : tensor<5xi64>
    %r = graph.Reshape %x, %s : (tensor<2x5x24xf32>, tensor<5xi64>) -> tensor<2x5x3x2x4xf32>
    %a = graph.Gather %r, %i {axis = 2 : i64} : (tensor<2x5x3x2x4xf32>, tensor<i64>) -> tensor<2x5x2x4xf32>
    %r2 = graph.Reshape %x, %s : (tensor<2x5x24xf32>, tensor<5xi64>) -> tensor<2x5x3x2x4xf32>
    %ix = graph.constant value dense<[2, 1]> : tensor<2xi64> : tensor<2xi64>
    %b = graph.Gather %r2, %ix {axis = 2 : i64} : (tensor<2x5x3x2x4xf32>, tensor<2xi64>) -> tensor<2x5x2x2x4xf32>
    %r3 = graph.Reshape %x, %s : (tensor<2x5x24xf32>, tensor<5xi64>) -> tensor<2x5x3x2x4xf32>
    %i0 = graph.constant value dense<0> : tensor<i64> : tensor<i64>
    %c = graph.Gather %r3, %i0 {axis = 2 : i64} : (tensor<2x5x3x2x4xf32>, tensor<i64>) -> tensor<2x5x2x4xf32>
    return %a, %b, %r3 : tensor<2x5x2x4xf32>, tensor<2x5x2x2x4xf32>, tensor<2x5x3x2x4xf32>
  }
}
