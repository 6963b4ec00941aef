//! Formatting for people: times, message previews, mute deadlines.

import type { Message } from "@imcloud/client";

export function time(ms: number): string {
  const d = new Date(ms);
  const now = new Date();
  const sameDay = d.toDateString() === now.toDateString();
  const hm = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return sameDay ? hm : `${d.toLocaleDateString()} ${hm}`;
}

export function preview(m: Message | null | undefined): string {
  if (!m) return "No messages yet";
  if (m.type === "image") return "[image]";
  if (m.type === "file") return "[file]";
  return m.content.length > 60 ? `${m.content.slice(0, 60)}…` : m.content;
}

export function until(ms: number): string {
  return new Date(ms).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}
