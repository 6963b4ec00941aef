//! Edit my profile: avatar (uploaded), nickname, signature, sex, birthday and location.

import { useState } from "preact/hooks";
import { ImagePicker } from "./ImagePicker";
import { Modal } from "./Modal";
import { useStore } from "./context";
import type { UpdateMeReq } from "@imcloud/client";

/** The sexes the profile can say (the API's `Sex`). */
type Sex = NonNullable<UpdateMeReq["sex"]>;
const SEXES: readonly Sex[] = ["unknown", "female", "male"];
const asSex = (v: string): Sex => SEXES.find((s) => s === v) ?? "unknown";

export function ProfileDialog() {
  const store = useStore();
  const me = store.state.me!;
  const [f, setF] = useState({
    nickname: me.nickname,
    avatar: me.avatar,
    signature: me.signature,
    sex: asSex(me.sex),
    birthday: me.birthday,
    location: me.location,
  });
  const set = (k: Exclude<keyof typeof f, "sex">) => (e: Event) =>
    setF({ ...f, [k]: (e.currentTarget as HTMLInputElement).value });
  return (
    <Modal id="profile" title="My profile" onClose={() => store.closeDialog()}>
      <form
        class="stack"
        onSubmit={async (e) => {
          e.preventDefault();
          if (await store.updateProfile(f)) store.closeDialog();
        }}
      >
        <p class="muted small">
          Account number {me.account_no} · {me.email}
        </p>
        <ImagePicker id="profile-avatar" label="Change avatar" name={f.nickname} value={f.avatar} onChange={(avatar) => setF({ ...f, avatar })} />
        <label>
          Nickname
          <input name="nickname" required maxLength={32} value={f.nickname} onInput={set("nickname")} />
        </label>
        <label>
          Signature
          <input name="signature" maxLength={200} value={f.signature} onInput={set("signature")} />
        </label>
        <label>
          Sex
          <select
            name="sex"
            value={f.sex}
            onChange={(e) => setF({ ...f, sex: asSex((e.currentTarget as HTMLSelectElement).value) })}
          >
            <option value="unknown">Not said</option>
            <option value="female">Female</option>
            <option value="male">Male</option>
          </select>
        </label>
        <label>
          Birthday
          <input type="date" name="birthday" value={f.birthday} onInput={set("birthday")} />
        </label>
        <label>
          Location
          <input name="location" maxLength={64} value={f.location} onInput={set("location")} />
        </label>
        <button type="submit" class="primary">
          Save
        </button>
      </form>
    </Modal>
  );
}
