/// @file btq.hpp
/// @brief Umbrella header: the queue, its options, stats and errors, and the in-process
///        executors.
#pragma once

#include "bounded_task_queue.hpp"
#include "errors.hpp"
#include "executor.hpp"
#include "executors/callable_executor.hpp"
#include "executors/thread_executor.hpp"
#include "observer.hpp"
#include "options.hpp"
#include "start_gate.hpp"
#include "stats.hpp"
