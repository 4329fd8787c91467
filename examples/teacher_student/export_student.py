#!/usr/bin/python3
"""Export the teacher-student student network to ONNX for `symoc compile`.

Usage: /usr/bin/python3 examples/teacher_student/export_student.py OUT.onnx

y = fc2(tanh(fc1(x))), no biases, 100 -> 70 -> 40 (the weights' values do not matter: the
C++ program initializes its own; only names and shapes reach the generated optimizer).
Exported like models/export_fixtures.py: training mode, no constant folding, so the
initializers keep their torch names fc1.weight and fc2.weight.
"""
import sys

import torch
import torch.nn as nn


class Student(nn.Module):
    def __init__(self, d_in=100, d_h=70, d_out=40):
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_h, bias=False)
        self.fc2 = nn.Linear(d_h, d_out, bias=False)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: export_student.py OUT.onnx")
    torch.manual_seed(0)
    model = Student()
    torch.onnx.export(model, (torch.randn(2, 100),), sys.argv[1], opset_version=14,
                      training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                      export_params=True, keep_initializers_as_inputs=False,
                      input_names=["x"], output_names=["y"])
    print("wrote", sys.argv[1])


if __name__ == "__main__":
    main()
