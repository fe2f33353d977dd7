# Hopper (sm_90a) kernel sources, owned by src/cuda/sm90. Built with 90a-real only.
list(APPEND SAGE_CUDA_SM90A_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/attn_qk_int8_pv_fp8_sm90.cu
  ${CMAKE_CURRENT_LIST_DIR}/attn_qk_int8_pv_fp8_sm90_q64.cu
  ${CMAKE_CURRENT_LIST_DIR}/attn_sm90_launch.cu
  ${CMAKE_CURRENT_LIST_DIR}/sm90_select.cu
)
