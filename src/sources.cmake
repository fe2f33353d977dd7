# Core: API, validation, selection. Owned by the API layer.
list(APPEND SAGE_C_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/api.c
  ${CMAKE_CURRENT_LIST_DIR}/select.c
  ${CMAKE_CURRENT_LIST_DIR}/validate.c
)
