/// @file inbox.hpp
/// @brief The queue's lock-free way in: an intrusive multi-producer, single-consumer FIFO
///        (D. Vyukov's design). Submitting threads push without a lock; the one thread that holds
///        the queue's lock at a time pops.
#pragma once

#include <atomic>
#include <thread>

#include "adaptive_mutex.hpp"

namespace btq::detail {

/// `Node` has a `Node* next` member; the inbox owns nothing. push() may run on any number of
/// threads at once; pop() and empty() only on one thread at a time (the queue's lock holder).
template <class Node>
class inbox {
  public:
    /// `stub` is a node that is never handed out: the inbox parks it when it would be empty.
    explicit inbox(Node* stub) noexcept : head_(stub), stub_(stub) {
        stub->next = nullptr;
        tail_.store(stub, std::memory_order_relaxed);
    }

    inbox(const inbox&) = delete;
    inbox& operator=(const inbox&) = delete;
    inbox(inbox&&) = delete;
    inbox& operator=(inbox&&) = delete;
    ~inbox() = default;

    /// Appends `node`. One atomic exchange; sequentially consistent, so a pusher that then reads
    /// the queue's slot count, and a lock holder that frees a slot and then pops, never both miss
    /// each other.
    void push(Node* node) noexcept {
        link(node).store(nullptr, std::memory_order_relaxed);
        Node* previous = tail_.exchange(node, std::memory_order_seq_cst);
        link(previous).store(node, std::memory_order_release);
    }

    /// The oldest node, or null if there is none. A push that has swapped the tail but not yet
    /// linked its node is waited for (it is a few instructions from done), so a node whose push
    /// is visible is never missed.
    [[nodiscard]] Node* pop() noexcept {
        Node* head = head_;
        Node* next = wait_link(head);
        if (head == stub_) {
            if (next == nullptr) {
                return nullptr;
            }
            head_ = next;
            head = next;
            next = wait_link(head);
        }
        if (next != nullptr) {
            head_ = next;
            return head;
        }
        // `head` is the last node: park the stub behind it so it can be handed out.
        push(stub_);
        next = wait_link(head);
        head_ = next;
        return head;
    }

    /// The node pop() would return next, left in place, or null (consumer side only).
    [[nodiscard]] Node* peek() noexcept { return head_ != stub_ ? head_ : wait_link(stub_); }

    /// True when nothing has been pushed that pop() has not returned (consumer side only).
    [[nodiscard]] bool empty() const noexcept {
        return head_ == stub_ && tail_.load(std::memory_order_seq_cst) == stub_;
    }

  private:
    static std::atomic_ref<Node*> link(Node* node) noexcept {
        return std::atomic_ref<Node*>(node->next);
    }

    /// `node->next`, waiting while a push is between its exchange and its link. Null only when
    /// `node` is the tail.
    Node* wait_link(Node* node) noexcept {
        for (int spin = 0;; ++spin) {
            Node* next = link(node).load(std::memory_order_acquire);
            if (next != nullptr || tail_.load(std::memory_order_seq_cst) == node) {
                return next;
            }
            if (spin < 64) {
                cpu_relax();
            } else {
                std::this_thread::yield(); // the pusher was preempted between its two steps
            }
        }
    }

    Node* head_; // consumer side
    Node* stub_;
    alignas(64) std::atomic<Node*> tail_;
};

} // namespace btq::detail
