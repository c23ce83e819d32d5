# Installs btq from a build tree into a private prefix, then configures, builds
# and runs tests/consumer against that installation.
#
# Usage:
#   cmake -DBTQ_BUILD_DIR=<btq build dir>
#         -DBTQ_CONSUMER_SOURCE_DIR=<path to tests/consumer>
#         -DBTQ_CXX_COMPILER=<C++ compiler used for btq>
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

set(prefix_dir   "${BTQ_BUILD_DIR}/consumer-prefix")
set(consumer_dir "${BTQ_BUILD_DIR}/consumer-build")

# Start from scratch each time so stale headers or caches cannot mask a problem.
file(REMOVE_RECURSE "${prefix_dir}" "${consumer_dir}")

function(run_step description)
    message(STATUS "consumer test: ${description}")
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE result)
    if(NOT result EQUAL 0)
        message(FATAL_ERROR "consumer test: '${description}' failed (${result})")
    endif()
endfunction()

run_step("install btq"
    "${CMAKE_COMMAND}" --install "${BTQ_BUILD_DIR}"
        --prefix "${prefix_dir}" --config "${BTQ_CONFIG}")

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
