# CUDA sources (owned by src/cuda). The portable (mma.sync) path is built for
# SAGE_CUDA_PORTABLE_ARCHS; the Hopper kernel's list lives in sm90/sources.cmake (its owner's).
list(APPEND SAGE_CUDA_PORTABLE_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/cuda_common.cu
  ${CMAKE_CURRENT_LIST_DIR}/quant.cu
  ${CMAKE_CURRENT_LIST_DIR}/attn_mma.cu
  ${CMAKE_CURRENT_LIST_DIR}/reference.cu
  ${CMAKE_CURRENT_LIST_DIR}/select.cu
)
include(${CMAKE_CURRENT_LIST_DIR}/sm90/sources.cmake OPTIONAL)
