@BEGIN@
# The example program of the ml4ep model '@NAME@'.
add_executable(@NAME@_example @NAME@_example.cpp)
if(ML4EP_USE_BLAS)
  find_package(BLAS REQUIRED)
  target_link_libraries(@NAME@_example PRIVATE ${BLAS_LIBRARIES})
else()
  target_compile_definitions(@NAME@_example PRIVATE ML4EP_NO_BLAS)
endif()
@END@
