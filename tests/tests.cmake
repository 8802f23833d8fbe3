# Unit tests: tests/unit/test_*.c, each an executable run by CTest (cmocka).
pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)

set(BYOAI_TEST_ENV
  "BYOAI_SHARED=${BYOAI_SHARED_DIR}"
  "BYOAI_BIN=$<TARGET_FILE:byoai>"
  "BYOAI_SOURCE=${CMAKE_SOURCE_DIR}"
  "BYOAI_BUILD=${CMAKE_BINARY_DIR}"
  "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1"
  "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")

file(GLOB UNIT_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/test_*.c)
foreach(f ${UNIT_TESTS})
  get_filename_component(n ${f} NAME_WE)
  add_executable(${n} ${f} ${CMAKE_SOURCE_DIR}/tests/unit/testutil.c)
  target_link_libraries(${n} PRIVATE byoai_lib PkgConfig::CMOCKA)
  target_include_directories(${n} PRIVATE ${CMAKE_SOURCE_DIR}/src ${CMAKE_SOURCE_DIR}/tests/unit)
  add_test(NAME unit/${n} COMMAND ${n})
  set_tests_properties(unit/${n} PROPERTIES ENVIRONMENT "${BYOAI_TEST_ENV}" TIMEOUT 600 LABELS unit)
endforeach()

# Fuzz corpora replayed: each fuzz/fuzz_*.c linked with fuzz/replay_main.c
# (no libFuzzer, so gcc builds it) runs over fuzz/corpus/<target>/, the seeds
# and every input a fuzzing run found, under ASan and UBSan. `make fuzz`
# (clang) is where new inputs are found; here they stay fixed.
if(NOT BYOAI_FUZZ)
  file(GLOB FUZZ_TARGETS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/fuzz/fuzz_*.c)
  foreach(f ${FUZZ_TARGETS})
    get_filename_component(n ${f} NAME_WE)
    add_executable(replay_${n} ${f} ${CMAKE_SOURCE_DIR}/fuzz/replay_main.c)
    target_link_libraries(replay_${n} PRIVATE byoai_lib)
    target_include_directories(replay_${n} PRIVATE ${CMAKE_SOURCE_DIR}/src)
    add_test(NAME fuzz/${n} COMMAND replay_${n} ${CMAKE_SOURCE_DIR}/fuzz/corpus/${n})
    set_tests_properties(fuzz/${n} PROPERTIES ENVIRONMENT "${BYOAI_TEST_ENV}" TIMEOUT 600 LABELS fuzz)
  endforeach()
endif()

# Integration tests: tests/integration/*.sh, real processes against the built binary.
file(GLOB INTEGRATION_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/integration/*.sh)
list(FILTER INTEGRATION_TESTS EXCLUDE REGEX "/lib[^/]*\\.sh$")
# Tests that need root (network namespaces) are registered only where the
# build runs as root (CI does); elsewhere they are absent, never "passed".
execute_process(COMMAND id -u OUTPUT_VARIABLE BYOAI_UID OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT BYOAI_UID STREQUAL "0")
  list(FILTER INTEGRATION_TESTS EXCLUDE REGEX "_netns\\.sh$")
  message(STATUS "not root: the network-namespace tests (tests/integration/*_netns.sh) are not registered")
endif()
foreach(f ${INTEGRATION_TESTS})
  get_filename_component(n ${f} NAME_WE)
  add_test(NAME integration/${n} COMMAND bash ${f})
  set_tests_properties(integration/${n} PROPERTIES ENVIRONMENT "${BYOAI_TEST_ENV}" TIMEOUT 900 LABELS integration)
endforeach()

# End-to-end tests: tests/e2e/*.sh, the web app in headless Chromium.
file(GLOB E2E_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/e2e/*.sh)
foreach(f ${E2E_TESTS})
  get_filename_component(n ${f} NAME_WE)
  add_test(NAME e2e/${n} COMMAND bash ${f})
  set_tests_properties(e2e/${n} PROPERTIES ENVIRONMENT "${BYOAI_TEST_ENV}" TIMEOUT 600 LABELS e2e)
endforeach()

# The ARM NEON kernels: cross-built for aarch64 and run under qemu-user
# (scripts/install-deps.sh --arm installs the tools; `make test` does that).
add_test(NAME cross/neon_qemu COMMAND sh ${CMAKE_SOURCE_DIR}/scripts/test-neon-qemu.sh ${CMAKE_BINARY_DIR}/neon)
set_tests_properties(cross/neon_qemu PROPERTIES TIMEOUT 600 LABELS cross)
