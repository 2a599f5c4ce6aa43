# Builds the fast-simulation hook example of the ml4ep model '@NAME@'. The model itself is header-only.
cmake_minimum_required(VERSION 3.16)
project(@NAME@_hook CXX)
set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
option(ML4EP_USE_BLAS "link the large matrix products against a CBLAS" ON)
