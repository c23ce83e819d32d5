# Installs btq's "development" component from a build tree into a private prefix, then builds
# and runs tests/consumer against that installation, one of two ways:
#   cmake       a separate CMake project with find_package(btq) (tests/consumer/CMakeLists.txt)
#   pkg-config  the compiler driven by `pkg-config --cflags --libs btq` (and btq-redis), after
#               the installed tree was moved elsewhere: the .pc files must find it there
#
# Usage:
#   cmake -DBTQ_BUILD_DIR=<btq build dir>
#         -DBTQ_CONSUMER_SOURCE_DIR=<path to tests/consumer>
#         -DBTQ_CXX_COMPILER=<C++ compiler used for btq>
#         [-DBTQ_CONSUMER_MODE=cmake|pkg-config]   (default cmake)
#         [-DBTQ_CONFIG=<build configuration>]
#         [-DBTQ_EXPECT_REDIS=1]   (the build has btq::redis: the consumer must find and use it)
#         -P run_consumer_test.cmake

foreach(var IN ITEMS BTQ_BUILD_DIR BTQ_CONSUMER_SOURCE_DIR BTQ_CXX_COMPILER)
    if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
        message(FATAL_ERROR "run_consumer_test.cmake: ${var} must be set")
    endif()
endforeach()

if(NOT DEFINED BTQ_CONFIG OR "${BTQ_CONFIG}" STREQUAL "")
    set(BTQ_CONFIG Release)
endif()
if(NOT DEFINED BTQ_CONSUMER_MODE OR "${BTQ_CONSUMER_MODE}" STREQUAL "")
    set(BTQ_CONSUMER_MODE cmake)
endif()
if(NOT BTQ_CONSUMER_MODE MATCHES "^(cmake|pkg-config)$")
    message(FATAL_ERROR "run_consumer_test.cmake: BTQ_CONSUMER_MODE must be cmake or pkg-config")
endif()

# A folder of each mode's own, so that both tests may run at once.
set(prefix_dir   "${BTQ_BUILD_DIR}/consumer-prefix-${BTQ_CONSUMER_MODE}")
set(consumer_dir "${BTQ_BUILD_DIR}/consumer-build-${BTQ_CONSUMER_MODE}")
set(moved_dir    "${prefix_dir}-moved")

# Start from scratch each time so stale headers or caches cannot mask a problem.
file(REMOVE_RECURSE "${prefix_dir}" "${consumer_dir}" "${moved_dir}")

function(run_step description)
    message(STATUS "consumer test (${BTQ_CONSUMER_MODE}): ${description}")
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE result)
    if(NOT result EQUAL 0)
        message(FATAL_ERROR "consumer test: '${description}' failed (${result})")
    endif()
endfunction()

# Only the library's component: the example server's programs need not even be built.
run_step("install btq (component development)"
    "${CMAKE_COMMAND}" --install "${BTQ_BUILD_DIR}"
        --prefix "${prefix_dir}" --config "${BTQ_CONFIG}" --component development)

if(BTQ_CONSUMER_MODE STREQUAL "cmake")
    run_step("configure consumer"
        "${CMAKE_COMMAND}" -S "${BTQ_CONSUMER_SOURCE_DIR}" -B "${consumer_dir}"
            -G Ninja
            "-DCMAKE_PREFIX_PATH=${prefix_dir}"
            "-DCMAKE_CXX_COMPILER=${BTQ_CXX_COMPILER}"
            "-DCMAKE_BUILD_TYPE=${BTQ_CONFIG}"
            "-DBTQ_EXPECT_REDIS=${BTQ_EXPECT_REDIS}")

    run_step("build consumer"
        "${CMAKE_COMMAND}" --build "${consumer_dir}")

    run_step("run consumer"
        "${consumer_dir}/btq_consumer")

    if(BTQ_EXPECT_REDIS)
        run_step("run redis consumer"
            "${consumer_dir}/btq_redis_consumer")
    endif()
    return()
endif()

# --- pkg-config ------------------------------------------------------------------------------

find_program(pkg_config NAMES pkg-config pkgconf)
if(NOT pkg_config)
    message(FATAL_ERROR "consumer test: pkg-config not found")
endif()

# The installed tree, moved: the .pc files find the prefix from their own folder.
file(RENAME "${prefix_dir}" "${moved_dir}")
file(GLOB_RECURSE pc_files "${moved_dir}/btq.pc")
list(LENGTH pc_files pc_count)
if(NOT pc_count EQUAL 1)
    message(FATAL_ERROR "consumer test: expected one installed btq.pc, found '${pc_files}'")
endif()
get_filename_component(pc_dir "${pc_files}" DIRECTORY)
# The installed btq first; hiredis (for btq-redis) from the system's own folders.
set(ENV{PKG_CONFIG_PATH} "${pc_dir}")

# `pkg-config --cflags --libs NAME`, split into arguments, in `out`.
function(pkg_config_flags name out)
    execute_process(COMMAND "${pkg_config}" --cflags --libs ${name}
        RESULT_VARIABLE result OUTPUT_VARIABLE flags ERROR_VARIABLE error
        OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(NOT result EQUAL 0)
        message(FATAL_ERROR "consumer test: pkg-config --cflags --libs ${name} failed: ${error}")
    endif()
    message(STATUS "consumer test (pkg-config): ${name}: ${flags}")
    separate_arguments(flags UNIX_COMMAND "${flags}")
    set(${out} ${flags} PARENT_SCOPE)
endfunction()

pkg_config_flags(btq btq_flags)
execute_process(COMMAND "${pkg_config}" --variable=includedir btq
    OUTPUT_VARIABLE include_dir OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT EXISTS "${include_dir}/btq/btq.hpp")
    message(FATAL_ERROR "consumer test: btq.pc's includedir '${include_dir}' has no btq/btq.hpp "
                        "once the installed tree is moved to ${moved_dir}")
endif()

file(MAKE_DIRECTORY "${consumer_dir}")
# -O0: the test is that it compiles, links and runs; -O0 compiles fastest.
run_step("build consumer with pkg-config btq"
    "${BTQ_CXX_COMPILER}" -std=c++20 -O0 "${BTQ_CONSUMER_SOURCE_DIR}/main.cpp"
        ${btq_flags} -o "${consumer_dir}/btq_consumer")
run_step("run consumer"
    "${consumer_dir}/btq_consumer")

if(BTQ_EXPECT_REDIS)
    pkg_config_flags(btq-redis redis_flags)
    run_step("build redis consumer with pkg-config btq-redis"
        "${BTQ_CXX_COMPILER}" -std=c++20 -O0 "${BTQ_CONSUMER_SOURCE_DIR}/redis_main.cpp"
            ${redis_flags} -o "${consumer_dir}/btq_redis_consumer")
    run_step("run redis consumer"
        "${consumer_dir}/btq_redis_consumer")
endif()
