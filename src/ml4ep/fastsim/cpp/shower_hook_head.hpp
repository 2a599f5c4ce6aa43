// Geant4-style fast-simulation hook for the ml4ep shower @WHAT@ (written by ml4ep.fastsim.hook).
// In a G4VFastSimulationModel, hold one ShowerGenerator per worker thread and call generate() from DoIt().
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

@INCLUDES@
namespace ml4ep_fastsim {
