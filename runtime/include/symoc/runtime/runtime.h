// Umbrella header for generated optimizer code.
#pragma once
#include "symoc/runtime/core.h"
#include "symoc/runtime/gauge.h"
#include "symoc/runtime/linalg.h"
#include "symoc/runtime/optim.h"
#include "symoc/runtime/state.h"
#include "symoc/runtime/symo.h"
