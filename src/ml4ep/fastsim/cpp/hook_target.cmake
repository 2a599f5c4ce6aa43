@BEGIN@
# The Geant4-style fast-simulation hook example (shower_hook.hpp, hook_main.cpp).
add_executable(shower_hook hook_main.cpp)
if(ML4EP_USE_BLAS)
  find_package(BLAS REQUIRED)
  target_link_libraries(shower_hook PRIVATE ${BLAS_LIBRARIES})
else()
  target_compile_definitions(shower_hook PRIVATE ML4EP_NO_BLAS)
endif()
@END@
