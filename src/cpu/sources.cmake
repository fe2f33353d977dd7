# CPU path sources (owned by src/cpu).
list(APPEND SAGE_C_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/numerics.c
  ${CMAKE_CURRENT_LIST_DIR}/parallel.c
  ${CMAKE_CURRENT_LIST_DIR}/spec.c
  ${CMAKE_CURRENT_LIST_DIR}/backend.c
)
