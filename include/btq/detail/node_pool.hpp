/// @file node_pool.hpp
/// @brief Recycles the queue's task nodes through per-thread caches.
///
/// A node is allocated by the submitting thread and freed by the thread that completes its task,
/// so with the general-purpose allocator every task pays for a hand-over between two threads'
/// heaps. Here each thread keeps its own free list of nodes of one size; a thread with too many
/// passes a batch to a shared depot, a thread with none takes a batch from it: one lock per
/// `batch` nodes instead of heap traffic per node. The depot holds at most `depot_limit` batches
/// (65,536 nodes of each size: 4 MiB of 64-byte nodes after a burst that large); beyond that
/// nodes go back to the heap. A thread that exits passes its cache to the depot.
#pragma once

#include <cstddef>
#include <mutex>
#include <new>
#include <vector>

namespace btq::detail {

template <std::size_t Size>
class node_pool {
    static_assert(Size >= sizeof(void*));

  public:
    [[nodiscard]] static void* allocate() {
        thread_cache& cache = local();
        if (cache.dead) {
            return ::operator new(Size);
        }
        if (cache.head == nullptr) {
            refill(cache);
        }
        if (cache.head == nullptr) {
            return ::operator new(Size);
        }
        free_node* node = cache.head;
        cache.head = node->next;
        --cache.count;
        return node;
    }

    static void deallocate(void* memory) noexcept {
        thread_cache& cache = local();
        if (cache.dead) { // a node freed while this thread's statics are being destroyed
            ::operator delete(memory);
            return;
        }
        auto* node = ::new (memory) free_node{cache.head};
        cache.head = node;
        if (++cache.count >= 2 * batch) {
            spill(cache);
        }
    }

  private:
    static constexpr std::size_t batch = 64;
    static constexpr std::size_t depot_limit = 1024;

    struct free_node {
        free_node* next;
    };

    struct chain {
        free_node* head = nullptr;
    };

    struct depot_type {
        std::mutex mutex;
        std::vector<chain> batches;
    };

    struct thread_cache {
        free_node* head = nullptr;
        std::size_t count = 0;
        bool dead = false;

        thread_cache() = default;
        thread_cache(const thread_cache&) = delete;
        thread_cache& operator=(const thread_cache&) = delete;
        thread_cache(thread_cache&&) = delete;
        thread_cache& operator=(thread_cache&&) = delete;
        ~thread_cache() {
            while (count >= batch) {
                spill(*this);
            }
            release(head);
            head = nullptr;
            dead = true;
        }
    };

    static thread_cache& local() noexcept {
        static thread_local thread_cache cache;
        return cache;
    }

    static depot_type& depot() noexcept {
        static depot_type* shared = new depot_type(); // never destroyed: threads may outlive main
        return *shared;
    }

    static void release(free_node* node) noexcept {
        while (node != nullptr) {
            free_node* next = node->next;
            ::operator delete(static_cast<void*>(node));
            node = next;
        }
    }

    static void refill(thread_cache& cache) {
        depot_type& shared = depot();
        std::lock_guard lock(shared.mutex);
        if (shared.batches.empty()) {
            return;
        }
        cache.head = shared.batches.back().head;
        cache.count = batch;
        shared.batches.pop_back();
    }

    /// Moves `batch` nodes from the cache to the depot, or to the heap if the depot is full.
    static void spill(thread_cache& cache) noexcept {
        free_node* first = cache.head;
        free_node* last = first;
        for (std::size_t i = 1; i < batch; ++i) {
            last = last->next;
        }
        cache.head = last->next;
        cache.count -= batch;
        last->next = nullptr;
        depot_type& shared = depot();
        {
            std::lock_guard lock(shared.mutex);
            if (shared.batches.size() < depot_limit) {
                try {
                    shared.batches.push_back(chain{first});
                    return;
                } catch (...) { // NOLINT(bugprone-empty-catch): no room, give them back
                }
            }
        }
        release(first);
    }
};

} // namespace btq::detail
